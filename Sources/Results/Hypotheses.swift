import Foundation

/// What a comparison tests: one hypothesis per measured quantity, not per metric. Most of a
/// benchmark's metrics are the same timed repetitions transformed (`ns_per_op`, `cycles_per_op`
/// and `throughput` of cpu.int are one time per repetition, scaled or inverted), so testing each
/// would count one piece of evidence three times and make the multiple-testing correction three
/// times stricter than it need be. Families are found from the data: two metrics of one result
/// belong together when every sample of one is the same constant times, or the same constant
/// divided by, the other's — true of every transform the catalogue derives, and never of two
/// quantities measured separately (vm.boot's `boot_time` and `to_first_instruction`).
public enum Hypotheses {
    /// Indices of `metrics` in families, each family's first member being the one tested and
    /// every family in the order its first member appears.
    public static func families(_ metrics: [Metric]) -> [[Int]] {
        var families: [[Int]] = []
        for index in metrics.indices {
            if let family = families.firstIndex(where: { isTransform(metrics[$0[0]].samples, metrics[index].samples) }) {
                families[family].append(index)
            } else {
                families.append([index])
            }
        }
        return families
    }

    /// y = c·x or y = c/x for every sample, to a relative 1e-3: within one process the
    /// derivations are exact, but a run of several rounds holds samples of several processes,
    /// each of which calibrated the TSC that converts cycles to nanoseconds for itself, so their
    /// ratio moves by about 1e-5 from round to round — one measurement all the same.
    /// At least two samples are needed to tell anything apart.
    static func isTransform(_ x: [Double], _ y: [Double]) -> Bool {
        guard x.count == y.count, x.count >= 2, x.allSatisfy({ $0.isFinite && $0 != 0 }),
            y.allSatisfy({ $0.isFinite && $0 != 0 })
        else { return false }
        func constant(_ values: [Double]) -> Bool {
            let first = values[0]
            return values.allSatisfy { abs($0 - first) <= 1e-3 * abs(first) }
        }
        return constant(zip(x, y).map { $1 / $0 }) || constant(zip(x, y).map { $1 * $0 })
    }

    /// Holm's step-down adjustment: the k-th smallest of m p-values is scaled by (m − k), with a
    /// running maximum so the adjusted values keep the raw order.
    public static func holm(_ pValues: [Double]) -> [Double] {
        let order = pValues.indices.sorted { pValues[$0] < pValues[$1] }
        var running = 0.0
        var adjusted = [Double](repeating: 1, count: pValues.count)
        for (rank, index) in order.enumerated() {
            running = max(running, min(1, pValues[index] * Double(pValues.count - rank)))
            adjusted[index] = running
        }
        return adjusted
    }
}
