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
            if let primaryLogRatios { tested.append((members, signTestPValue(primaryLogRatios))) }
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
                "too few rounds to ever reach alpha \(alpha): with \(rounds.count) rounds the smallest sign-test p is "
                    + String(format: "%.4f", smallestPValue(rounds: rounds.count))
                    + ", \(tested.count) hypotheses make Holm's smallest adjusted p \(String(format: "%.4f", smallest)); "
                    + "use at least \(roundsNeeded(hypotheses: tested.count, alpha: alpha)) rounds")
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

    /// Two-sided exact sign test of the round-paired log-ratios (H0: B is as likely to be slower
    /// as faster in a round): p = 2·P(X ≤ min(#up, #down)), X ~ Binomial(n, ½), rounds with no
    /// change left out. Only the direction of each round counts, so a round the host disturbed —
    /// however far — weighs no more than any other: on this host's per-round noise (heavy tails:
    /// a few rounds off by 30–80%), the sign test flagged 28 of 70 quantities slowed by 10% in 32
    /// rounds where a permutation test of the mean flagged 3 (README, "The gate decides").
    public static func signTestPValue(_ values: [Double]) -> Double {
        let up = values.filter { $0 > 0 }.count
        let down = values.filter { $0 < 0 }.count
        return min(1, 2 * binomialLowerTail(min(up, down), trials: up + down))
    }

    /// P(X ≤ k) for X ~ Binomial(n, ½), in logarithms so that n in the thousands stays finite.
    static func binomialLowerTail(_ k: Int, trials n: Int) -> Double {
        guard n > 0 else { return 1 }
        guard k < n else { return 1 }
        var logChoose = 0.0  // ln C(n, 0)
        var total = 0.0
        for i in 0...k {
            if i > 0 { logChoose += log(Double(n - i + 1)) - log(Double(i)) }
            total += exp(logChoose - Double(n) * log(2.0))
        }
        return min(1, total)
    }

    /// Rounds `ab` runs for `hypotheses` at family-wise `alpha`: the fewest n with which a change
    /// seen in four rounds out of five (the fifth pointing the other way, however far) passes
    /// Holm's first step — m · 2·P(X ≤ ⌊n/5⌋) < alpha for X ~ Binomial(n, ½), the sign test's p
    /// of such rounds. Four in five is what a 10% slowdown looked like here on most quantities
    /// (75–94% of rounds slower), so a real, consistent change is decided, not only a perfect
    /// series. 1 hypothesis: 18 rounds; 2 benchmarks × 2 modes (3–4): 23–24; the quick suite (73): 38.
    public static func roundsNeeded(hypotheses: Int, alpha: Double) -> Int {
        var rounds = 2
        while rounds < 1000
            && Double(max(1, hypotheses)) * min(1, 2 * binomialLowerTail(rounds / 5, trials: rounds)) >= alpha
        {
            rounds += 1
        }
        return rounds
    }

    /// With n rounds the most extreme outcome (every ratio on one side) has p = 2 / 2^n.
    public static func smallestPValue(rounds: Int) -> Double { rounds > 0 ? min(1, 2 / pow(2, Double(rounds))) : 1 }
}
