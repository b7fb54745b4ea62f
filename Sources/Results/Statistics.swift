import Foundation
import Histogram

/// Summary of one metric's samples (one sample per repetition). The 95% confidence interval is
/// a percentile bootstrap of the median (seeded: the same samples always give the same
/// interval). Outliers are flagged by Tukey's fences and kept: the median is robust to them and
/// dropping data silently would hide exactly the noise a reader needs to see.
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
    /// Percentiles of individual operations (HdrHistogram over the guest's per-operation
    /// latency pass), for metrics that have one. Not percentiles of repetitions.
    public var p50: Double?
    public var p90: Double?
    public var p99: Double?
    public var p999: Double?
    /// Operations behind p50...p999.
    public var latencyOperations: UInt64?
    /// Indices of samples outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR].
    public var outliers: [Int]
    /// CV above `noisyThreshold`: small differences in this metric mean nothing.
    public var noisy: Bool

    public static let noisyThreshold = 0.05

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
        let q1 = Summary.quantile(sorted, 0.25)
        let q3 = Summary.quantile(sorted, 0.75)
        let fence = 1.5 * (q3 - q1)
        outliers = samples.indices.filter { samples[$0] < q1 - fence || samples[$0] > q3 + fence }
        noisy = cv > Summary.noisyThreshold
    }

    /// Half-width of the 95% CI relative to the median (0.02 = ±2%).
    public var relativeCIHalfWidth: Double {
        median != 0 ? (ci95High - ci95Low) / 2 / abs(median) : 0
    }

    /// Adds operation percentiles from the guest's latency buckets, converted to nanoseconds.
    public mutating func addLatencyPercentiles(_ buckets: LatencyBuckets, tscHertz: Double) {
        guard !buckets.isEmpty else { return }
        // Recorded in picoseconds so that sub-nanosecond resolution survives the integer histogram.
        var histogram = Histogram<UInt64>(highestTrackableValue: 1 << 50, numberOfSignificantValueDigits: .three)
        for (index, count) in buckets.counts {
            let picoseconds = LatencyBuckets.representativeCycles(index) / tscHertz * 1e12
            _ = histogram.record(UInt64(Swift.min(Swift.max(picoseconds, 1), Double(1 << 50))), count: count)
        }
        func at(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1000 }
        p50 = at(50)
        p90 = at(90)
        p99 = at(99)
        p999 = at(99.9)
        latencyOperations = histogram.totalCount
    }

    /// Linear interpolation between closest ranks (type 7, the default of R and NumPy).
    public static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        guard sorted.count > 1 else { return sorted[0] }
        let position = q * Double(sorted.count - 1)
        let lower = Int(position.rounded(.down))
        let upper = Swift.min(lower + 1, sorted.count - 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - Double(lower))
    }

    public static func bootstrapMedianInterval(_ samples: [Double], resamples: Int) -> (Double, Double) {
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

    /// Bootstrap CI of median(a) / median(b), resampling each side independently.
    public static func ratioInterval(_ a: [Double], _ b: [Double], resamples: Int = 2000) -> (
        ratio: Double, low: Double, high: Double
    )? {
        guard !a.isEmpty, !b.isEmpty else { return nil }
        let ratio = quantile(a.sorted(), 0.5) / quantile(b.sorted(), 0.5)
        guard ratio.isFinite else { return nil }
        var generator = SplitMix64(seed: 0x7261_7469_6F21)
        var ratios: [Double] = []
        ratios.reserveCapacity(resamples)
        var ra = a
        var rb = b
        for _ in 0..<resamples {
            for i in ra.indices { ra[i] = a[Int(generator.next() % UInt64(a.count))] }
            for i in rb.indices { rb[i] = b[Int(generator.next() % UInt64(b.count))] }
            ra.sort()
            rb.sort()
            ratios.append(quantile(ra, 0.5) / quantile(rb, 0.5))
        }
        ratios.sort()
        return (ratio, quantile(ratios, 0.025), quantile(ratios, 0.975))
    }

    /// Ratios paired by round: a[i] / b[i] for each round i (both measured in the same round, so
    /// the host's drift between rounds cancels), their median, and a percentile-bootstrap CI of
    /// that median resampling rounds. nil unless both sides have the same number (> 1) of values.
    public static func pairedRatioInterval(_ a: [Double], _ b: [Double], resamples: Int = 2000) -> (
        ratio: Double, low: Double, high: Double
    )? {
        guard a.count == b.count, a.count > 1 else { return nil }
        let ratios = zip(a, b).map { $0 / $1 }
        guard ratios.allSatisfy(\.isFinite) else { return nil }
        let (low, high) = bootstrapMedianInterval(ratios, resamples: resamples)
        return (quantile(ratios.sorted(), 0.5), low, high)
    }
}

extension Metric {
    /// This metric over `other`'s: paired by round when both come from the same rounds, else the
    /// ratio of medians with independent resampling.
    public func ratio(to other: Metric) -> (ratio: Double, low: Double, high: Double)? {
        if let mine = roundValues, let theirs = other.roundValues,
            let paired = Summary.pairedRatioInterval(mine, theirs)
        {
            return paired
        }
        return Summary.ratioInterval(samples, other.samples)
    }
}
