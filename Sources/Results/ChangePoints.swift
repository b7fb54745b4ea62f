/// Change points in a series of measurements over time (one value per run), by E-divisive means
/// (Matteson & James, "A Nonparametric Approach for Multiple Change Point Analysis of
/// Multivariate Data", JASA 2014) — the method Apache Otava (formerly Hunter) uses for
/// performance CI histories. Unlike comparing each run with the previous one, it asks whether the
/// series is better explained by two distributions than one, so ordinary run-to-run drift does
/// not raise an alarm and a lasting step does.
///
/// For a split of a segment into X (before τ) and Y (from τ), the divergence is
/// `Q = (m·n / (m+n)) · (2·E|X-Y| − E|X-X'| − E|Y-Y'|)` (distances to the power 1). The split with
/// the largest Q is tested by permutation: the segment is shuffled `permutations` times (seeded)
/// and the split is significant when its Q beats all but a fraction `significance` of the
/// shuffles. Significant splits are searched again on each side (binary segmentation).
public enum ChangePoints {
    public struct ChangePoint: Equatable, Sendable {
        /// The first index of the new regime.
        public let index: Int
        /// Median after / median before − 1, in percent (positive: the values went up).
        public let changePercent: Double
        /// The permutation test's p-value.
        public let pValue: Double
    }

    /// - Parameters:
    ///   - minimumSegment: the fewest points a regime may have (a single outlier is not a regime).
    ///   - significance: the permutation p-value a split must be below.
    public static func detect(
        _ values: [Double], minimumSegment: Int = 3, significance: Double = 0.05, permutations: Int = 199,
        seed: UInt64 = 0x6368_616E_6765
    ) -> [ChangePoint] {
        guard values.allSatisfy(\.isFinite) else { return [] }
        let minimumSegment = max(2, minimumSegment)  // a regime's spread needs two points
        var generator = SplitMix64(seed: seed)
        var found: [Int: Double] = [:]
        var pending = [0..<values.count]
        while let segment = pending.popLast() {
            guard segment.count >= 2 * minimumSegment,
                let (split, statistic) = bestSplit(Array(values[segment]), minimumSegment: minimumSegment)
            else { continue }
            let p = permutationPValue(
                Array(values[segment]), observed: statistic, minimumSegment: minimumSegment, permutations: permutations,
                generator: &generator)
            guard p < significance else { continue }
            let index = segment.lowerBound + split
            found[index] = p
            pending.append(segment.lowerBound..<index)
            pending.append(index..<segment.upperBound)
        }
        let indices = found.keys.sorted()
        // Each change is measured between the regimes on either side of it.
        return indices.enumerated().map { position, index in
            let before = values[(position > 0 ? indices[position - 1] : 0)..<index].sorted()
            let after = values[index..<(position + 1 < indices.count ? indices[position + 1] : values.count)].sorted()
            let from = Summary.quantile(before, 0.5)
            let to = Summary.quantile(after, 0.5)
            return ChangePoint(
                index: index, changePercent: from != 0 ? (to / from - 1) * 100 : 0, pValue: found[index] ?? 1)
        }
    }

    /// The split of `values` with the largest divergence, with that divergence. A 2-D prefix sum
    /// of the pairwise distances makes every split O(1), so a search is O(n²).
    static func bestSplit(_ values: [Double], minimumSegment: Int) -> (Int, Double)? {
        let n = values.count
        guard n >= 2 * minimumSegment else { return nil }
        let width = n + 1
        var prefix = [Double](repeating: 0, count: width * width)
        for i in 0..<n {
            for j in 0..<n {
                prefix[(i + 1) * width + j + 1] =
                    abs(values[i] - values[j]) + prefix[i * width + j + 1] + prefix[(i + 1) * width + j] - prefix[i * width + j]
            }
        }
        /// Sum of distances for rows [r0, r1) and columns [c0, c1).
        func block(_ r0: Int, _ r1: Int, _ c0: Int, _ c1: Int) -> Double {
            prefix[r1 * width + c1] - prefix[r0 * width + c1] - prefix[r1 * width + c0] + prefix[r0 * width + c0]
        }
        var best: (Int, Double)?
        for split in minimumSegment...(n - minimumSegment) {
            let m = Double(split)
            let k = Double(n - split)
            let cross = 2 * block(0, split, split, n) / (m * k)
            let before = block(0, split, 0, split) / (m * (m - 1))
            let after = block(split, n, split, n) / (k * (k - 1))
            let statistic = m * k / (m + k) * (cross - before - after)
            if best == nil || statistic > best!.1 { best = (split, statistic) }
        }
        return best
    }

    static func permutationPValue(
        _ values: [Double], observed: Double, minimumSegment: Int, permutations: Int, generator: inout SplitMix64
    ) -> Double {
        var shuffled = values
        var atLeastAsLarge = 0
        for _ in 0..<permutations {
            shuffled.shuffle(using: &generator)
            if let (_, statistic) = bestSplit(shuffled, minimumSegment: minimumSegment), statistic >= observed {
                atLeastAsLarge += 1
            }
        }
        return Double(atLeastAsLarge + 1) / Double(permutations + 1)
    }
}
