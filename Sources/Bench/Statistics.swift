import Foundation

/// Summary of one metric's samples. The 95% confidence interval is a percentile bootstrap of the
/// median (seeded, so the same samples always give the same interval).
public struct Summary: Codable, Equatable, Sendable {
    public var median: Double
    public var mean: Double
    public var stddev: Double
    /// Coefficient of variation, stddev / mean.
    public var cv: Double
    public var ci95Low: Double
    public var ci95High: Double
    public var min: Double
    public var max: Double
    public var p50: Double?
    public var p99: Double?

    public init(_ samples: [Double], bootstrapResamples: Int = 2000) {
        precondition(!samples.isEmpty, "a summary needs at least one sample")
        let sorted = samples.sorted()
        let n = Double(samples.count)
        let mean = samples.reduce(0, +) / n
        self.mean = mean
        let variance = samples.count > 1 ? samples.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1) : 0
        stddev = variance.squareRoot()
        cv = mean != 0 ? stddev / abs(mean) : 0
        median = Summary.quantile(sorted, 0.5)
        min = sorted.first!
        max = sorted.last!
        (ci95Low, ci95High) = Summary.bootstrapMedianInterval(samples, resamples: bootstrapResamples)
    }

    /// Linear interpolation between closest ranks (type 7, the default of R and NumPy).
    public static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        guard sorted.count > 1 else { return sorted[0] }
        let position = q * Double(sorted.count - 1)
        let lower = Int(position.rounded(.down))
        let upper = Swift.min(lower + 1, sorted.count - 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - Double(lower))
    }

    static func bootstrapMedianInterval(_ samples: [Double], resamples: Int) -> (Double, Double) {
        guard samples.count > 1 else { return (samples[0], samples[0]) }
        var generator = SplitMix64(seed: 0x6876_6265_6E63_6821)
        var medians: [Double] = []
        medians.reserveCapacity(resamples)
        var resample = [Double](repeating: 0, count: samples.count)
        for _ in 0..<resamples {
            for index in resample.indices { resample[index] = samples[Int(generator.next() % UInt64(samples.count))] }
            resample.sort()
            medians.append(quantile(resample, 0.5))
        }
        medians.sort()
        return (quantile(medians, 0.025), quantile(medians, 0.975))
    }
}

/// A small deterministic generator for the bootstrap (reproducible intervals).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
