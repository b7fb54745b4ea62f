import Foundation

/// `hvbench ab`: two configurations (two builds, two sets of options, or both) measured in one
/// invocation, interleaved round by round, and compared within each round — the design of
/// Firecracker's A/B tests and of duet benchmarking. Per metric the evidence is the round-paired
/// log-ratios d = ln(B / A): a sign-flip permutation test (exact up to 16 rounds) says whether
/// they centre on zero, Holm's correction keeps the family of metrics at `alpha`, and a practical
/// threshold keeps tiny but real effects from failing a gate. The effect is reported as
/// exp(median d) − 1 with a bootstrap CI over rounds.
public enum ABComparison {
    /// - Parameter rounds: for each round, A's results and B's results (each one run, one round).
    public static func compare(
        rounds: [(a: RunResults, b: RunResults)], alpha: Double = 0.01, thresholds: ThresholdPolicy = ThresholdPolicy(),
        labels: (a: String, b: String) = ("A", "B")
    ) -> ComparisonReport {
        guard let first = rounds.first else {
            return ComparisonReport(
                baselineLabel: labels.a, currentLabel: labels.b, alpha: alpha, incompatibilities: ["no rounds ran"],
                warnings: [], metrics: [])
        }
        struct Key: Hashable, Comparable {
            let system: String
            let benchmark: String
            let metric: String
            static func < (x: Key, y: Key) -> Bool { (x.system, x.benchmark, x.metric) < (y.system, y.benchmark, y.metric) }
        }
        func metrics(_ run: RunResults) -> [Key: (BenchmarkResult, Metric)] {
            var found: [Key: (BenchmarkResult, Metric)] = [:]
            for result in run.results where result.status == .ok {
                for metric in result.metrics {
                    found[Key(system: result.system, benchmark: result.benchmark, metric: metric.name)] = (result, metric)
                }
            }
            return found
        }
        let perRound = rounds.map { (metrics($0.a), metrics($0.b)) }
        // One hypothesis per family of metrics that are the same samples transformed (from the
        // first round A measured each result in): its first member is tested, the rest share the verdict.
        var families: [[Key]] = []
        var lost: [MetricComparison] = []
        var grouped = Set<Key>()
        for round in rounds {
            for result in round.a.results where result.status == .ok {
                let keys = result.metrics.map { Key(system: result.system, benchmark: result.benchmark, metric: $0.name) }
                guard let first = keys.first, !grouped.contains(first) else { continue }
                grouped.formUnion(keys)
                families += Hypotheses.families(result.metrics).map { $0.map { keys[$0] } }
            }
        }
        var tested: [(members: [MetricComparison], pValue: Double)] = []
        for family in families.sorted(by: { $0[0] < $1[0] }) {
            var members: [MetricComparison] = []
            var primaryLogRatios: [Double]?
            for key in family {
                guard let (_, template) = perRound.lazy.compactMap({ $0.0[key] }).first else { continue }
                let threshold = thresholds.percent(benchmark: key.benchmark, metric: key.metric)
                var comparison = MetricComparison(
                    system: key.system, benchmark: key.benchmark, metric: key.metric, unit: template.unit,
                    better: template.better, baselineMedian: nil, currentMedian: nil, changePercent: nil, pValue: nil,
                    thresholdPercent: threshold, verdict: .unchanged, noisy: false)
                // B lost a metric that A measured in the same round: the largest regression there is.
                if let round = perRound.firstIndex(where: { $0.0[key] != nil && $0.1[key] == nil }) {
                    let result = rounds[round].b.results.first { $0.system == key.system && $0.benchmark == key.benchmark }
                    comparison.verdict = .lost
                    comparison.reason =
                        "round \(round + 1): "
                        + (result.map { "\($0.status.rawValue): \($0.reason ?? "no reason given")" } ?? "not run")
                    lost.append(comparison)
                    continue
                }
                let pairs = perRound.compactMap { a, b -> (Double, Double)? in
                    guard let x = a[key]?.1.summary.median, let y = b[key]?.1.summary.median, x > 0, y > 0 else { return nil }
                    return (x, y)
                }
                guard !pairs.isEmpty else { continue }
                let logRatios = pairs.map { log($0.1 / $0.0) }
                comparison.baselineMedian = Summary.quantile(pairs.map(\.0).sorted(), 0.5)
                comparison.currentMedian = Summary.quantile(pairs.map(\.1).sorted(), 0.5)
                let centre = Summary.quantile(logRatios.sorted(), 0.5)
                comparison.changePercent = (exp(centre) - 1) * 100
                if logRatios.count > 1 {
                    let (low, high) = Summary.bootstrapMedianInterval(logRatios, resamples: 2000)
                    comparison.changeInterval = [(exp(low) - 1) * 100, (exp(high) - 1) * 100]
                }
                comparison.noisy = pairs.count > 1 && Summary(logRatios.map { exp($0) }).noisy
                if primaryLogRatios == nil {
                    primaryLogRatios = logRatios
                } else {
                    comparison.sharesVerdictWith = members.first?.metric
                }
                members.append(comparison)
            }
            if let primaryLogRatios { tested.append((members, signFlipPValue(primaryLogRatios))) }
        }
        let adjusted = Hypotheses.holm(tested.map(\.pValue))
        var result: [MetricComparison] = []
        for (index, family) in tested.enumerated() {
            result += MetricComparison.judgeFamily(family.members, pValue: adjusted[index], alpha: alpha)
        }
        var warnings: [String] = []
        let smallest = smallestPValue(rounds: rounds.count) * Double(max(1, tested.count))
        if !tested.isEmpty && smallest >= alpha {
            warnings.append(
                "too few rounds to ever reach alpha \(alpha): with \(rounds.count) rounds the smallest sign-flip p is "
                    + String(format: "%.4f", smallestPValue(rounds: rounds.count))
                    + ", \(tested.count) hypotheses make Holm's smallest adjusted p \(String(format: "%.4f", smallest)); "
                    + "use at least \(Hypotheses.roundsNeeded(hypotheses: tested.count, alpha: alpha)) rounds")
        }
        let environments = ComparisonReport.environmentDifferences(first.a.environment, first.b.environment)
        warnings += environments.warnings + environments.blocking.map { "A and B differ: \($0)" }
        return ComparisonReport(
            baselineLabel: labels.a, currentLabel: labels.b, alpha: alpha, incompatibilities: [], warnings: warnings,
            metrics: lost + result)
    }

    /// The hypotheses a comparison of `run`'s results tests: one per family of metrics of each
    /// ok result (what sizes `ab`'s rounds).
    public static func hypotheses(in run: RunResults) -> Int {
        run.results.filter { $0.status == .ok }.map { Hypotheses.families($0.metrics).count }.reduce(0, +)
    }

    /// Two-sided sign-flip permutation p-value of the mean of `values` (H0: symmetric around 0):
    /// exact over all 2^n sign patterns up to 20 values (visited in Gray-code order, so each
    /// pattern costs one addition), else 200,000 seeded random patterns.
    public static func signFlipPValue(_ values: [Double]) -> Double {
        let n = values.count
        guard n > 0 else { return 1 }
        let observed = abs(values.reduce(0, +))
        let tolerance = 1e-12 * max(1, observed)
        if n <= 20 {
            var sum = values.reduce(0, +)
            var signs = [Double](repeating: 1, count: n)
            var extreme = abs(sum) >= observed - tolerance ? 1 : 0
            let total = 1 << n
            for step in 1..<total {
                let flip = step.trailingZeroBitCount  // the one sign that changes at this step
                sum -= 2 * signs[flip] * values[flip]
                signs[flip] = -signs[flip]
                if abs(sum) >= observed - tolerance { extreme += 1 }
            }
            return Double(extreme) / Double(total)
        }
        // Random patterns, the observed one counted in (a valid p, never 0), enough of them
        // that the Holm-scaled smallest p of a large family can still pass alpha.
        var generator = SplitMix64(seed: 0x7369_676E_666C_6970)
        var extreme = 0
        let patterns = 200_000
        for _ in 0..<patterns {
            var sum = 0.0
            var bits = generator.next()
            for (index, value) in values.enumerated() {
                if index % 64 == 0 && index > 0 { bits = generator.next() }
                sum += bits & (1 << UInt64(index % 64)) != 0 ? -value : value
            }
            if abs(sum) >= observed - tolerance { extreme += 1 }
        }
        return Double(extreme + 1) / Double(patterns + 1)
    }

    /// With n rounds the most extreme outcome (every ratio on one side) has p = 2 / 2^n.
    public static func smallestPValue(rounds: Int) -> Double { rounds > 0 ? min(1, 2 / pow(2, Double(rounds))) : 1 }
}
