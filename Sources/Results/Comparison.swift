import Foundation
import Yams

/// Two-sided Mann-Whitney U test: do two samples come from the same distribution?
public enum MannWhitney {
    /// The two-sided p-value. Exact (by counting rank arrangements) for small samples without
    /// ties; otherwise the normal approximation with tie and continuity corrections.
    public static func pValue(_ a: [Double], _ b: [Double]) -> Double {
        let n1 = a.count
        let n2 = b.count
        guard n1 > 0, n2 > 0 else { return 1 }
        let pooled = (a.map { ($0, 0) } + b.map { ($0, 1) }).sorted { $0.0 < $1.0 }
        var ranks = [Double](repeating: 0, count: pooled.count)
        var tieGroups: [Int] = []
        var index = 0
        while index < pooled.count {
            var end = index
            while end + 1 < pooled.count && pooled[end + 1].0 == pooled[index].0 { end += 1 }
            let rank = Double(index + end) / 2 + 1
            for k in index...end { ranks[k] = rank }
            if end > index { tieGroups.append(end - index + 1) }
            index = end + 1
        }
        let rankSumA = zip(pooled, ranks).filter { $0.0.1 == 0 }.reduce(0) { $0 + $1.1 }
        let u = rankSumA - Double(n1 * (n1 + 1)) / 2
        if tieGroups.isEmpty && n1 <= 25 && n2 <= 25 {
            return exactTwoSided(u: Int(u.rounded()), n1: n1, n2: n2)
        }
        let mean = Double(n1 * n2) / 2
        let n = Double(n1 + n2)
        let tieTerm = tieGroups.reduce(0.0) { $0 + Double($1 * $1 * $1 - $1) }
        let variance = Double(n1 * n2) / 12 * ((n + 1) - tieTerm / (n * (n - 1)))
        guard variance > 0 else { return 1 }
        let z = (abs(u - mean) - 0.5) / variance.squareRoot()
        return min(1, 2 * (1 - normalCDF(max(0, z))))
    }

    /// Counts, for every U, the arrangements of n1 + n2 ranks giving it (f(m, n, u) =
    /// f(m-1, n, u-n) + f(m, n-1, u)), then sums the tails.
    static func exactTwoSided(u: Int, n1: Int, n2: Int) -> Double {
        let maxU = n1 * n2
        var table = [[[Double]]](repeating: [[Double]](repeating: [], count: n2 + 1), count: n1 + 1)
        for m in 0...n1 {
            for n in 0...n2 {
                var counts = [Double](repeating: 0, count: m * n + 1)
                if m == 0 || n == 0 {
                    counts[0] = 1
                } else {
                    for value in 0...(m * n) {
                        let withLast = value >= n ? table[m - 1][n][safe: value - n] : 0
                        counts[value] = withLast + table[m][n - 1][safe: value]
                    }
                }
                table[m][n] = counts
            }
        }
        let distribution = table[n1][n2]
        let total = distribution.reduce(0, +)
        let lower = distribution[0...min(u, maxU)].reduce(0, +) / total
        let upper = distribution[max(0, u)...maxU].reduce(0, +) / total
        return min(1, 2 * min(lower, upper))
    }

    static func normalCDF(_ z: Double) -> Double { 0.5 * erfc(-z / 2.0.squareRoot()) }
}

extension Array where Element == Double {
    fileprivate subscript(safe index: Int) -> Double { index >= 0 && index < count ? self[index] : 0 }
}

/// How large a change must be to matter, in percent: a default and per-metric overrides.
///
///     default: 5
///     metrics:
///       cpu.pio/ns_per_op: 15     # exact "benchmark/metric"
///       cpu.mem-bw: 12            # every metric of a benchmark
///       "cpu.*": 8                # glob on "benchmark/metric"
public struct ThresholdPolicy: Sendable, Equatable {
    public var defaultPercent: Double
    public var overrides: [(pattern: String, percent: Double)]

    public init(defaultPercent: Double = 5, overrides: [(pattern: String, percent: Double)] = []) {
        self.defaultPercent = defaultPercent
        self.overrides = overrides
    }

    public static func == (a: ThresholdPolicy, b: ThresholdPolicy) -> Bool {
        a.defaultPercent == b.defaultPercent && a.overrides.map(\.pattern) == b.overrides.map(\.pattern)
            && a.overrides.map(\.percent) == b.overrides.map(\.percent)
    }

    public func percent(benchmark: String, metric: String) -> Double {
        let key = "\(benchmark)/\(metric)"
        for (pattern, percent) in overrides where pattern == key { return percent }
        for (pattern, percent) in overrides where pattern == benchmark { return percent }
        for (pattern, percent) in overrides where Self.glob(pattern, key) || Self.glob(pattern, benchmark) { return percent }
        return defaultPercent
    }

    static func glob(_ pattern: String, _ text: String) -> Bool {
        guard pattern.contains("*") else { return false }
        let parts = pattern.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
        var rest = Substring(text)
        for (index, part) in parts.enumerated() {
            if index == 0 {
                guard rest.hasPrefix(part) else { return false }
                rest = rest.dropFirst(part.count)
            } else if index == parts.count - 1 {
                return part.isEmpty || rest.hasSuffix(part)
            } else {
                guard let range = rest.range(of: part) else { return false }
                rest = rest[range.upperBound...]
            }
        }
        return true
    }

    /// Per-metric thresholds from repeated runs of the same build (A/A): for each metric, the
    /// spread of the runs' medians, (max - min) / mean, times `margin`, never below the default.
    /// The margin covers what a few runs cannot show of the tails, and that one compare tests
    /// every metric at once (at 1.5 a fifth A/A run still tripped one metric on the development host).
    /// Repetitions inside one run share that run's host conditions, so only the spread *between*
    /// runs says how far a metric moves on its own on this host.
    public static func calibrated(from runs: [RunResults], defaultPercent: Double = 5, margin: Double = 2) -> (
        policy: ThresholdPolicy, spreads: [(key: String, percent: Double)]
    ) {
        var medians: [String: [Double]] = [:]
        for run in runs {
            for result in run.results where result.status == .ok {
                for metric in result.metrics {
                    medians["\(result.benchmark)/\(metric.name)|\(result.system)", default: []].append(metric.summary.median)
                }
            }
        }
        // One threshold per benchmark/metric: the widest spread over the systems that ran it.
        var spreadByMetric: [String: Double] = [:]
        for (key, values) in medians where values.count == runs.count && values.count > 1 {
            let mean = values.reduce(0, +) / Double(values.count)
            guard mean != 0 else { continue }
            let spread = (values.max()! - values.min()!) / abs(mean) * 100
            let metricKey = String(key.split(separator: "|")[0])
            spreadByMetric[metricKey] = max(spreadByMetric[metricKey] ?? 0, spread)
        }
        var policy = ThresholdPolicy(defaultPercent: defaultPercent)
        for (key, spread) in spreadByMetric.sorted(by: { $0.key < $1.key }) {
            let threshold = (max(defaultPercent, spread * margin)).rounded(.up)
            if threshold > defaultPercent { policy.overrides.append((key, threshold)) }
        }
        return (policy, spreadByMetric.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }

    /// The policy as the YAML `load` reads.
    public var yaml: String {
        var text = "default: \(Self.number(defaultPercent))\n"
        if !overrides.isEmpty {
            text += "metrics:\n"
            for (pattern, percent) in overrides { text += "  \"\(pattern)\": \(Self.number(percent))\n" }
        }
        return text
    }

    private static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }

    public static func load(from url: URL) throws -> ThresholdPolicy {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw Suite.LoadError(file: url.path, line: nil, message: "cannot read the thresholds file")
        }
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw Suite.LoadError(file: url.path, line: nil, message: "empty file")
            }
            root = node
        } catch let error as YamlError {
            throw Suite.LoadError(
                file: url.path, line: YAMLLocation.line(of: error), message: "malformed YAML: \(YAMLLocation.message(of: error))")
        }
        func fail(_ node: Node, _ message: String) -> Suite.LoadError {
            Suite.LoadError(file: url.path, line: node.mark?.line, message: message)
        }
        guard let mapping = root.mapping else { throw fail(root, "thresholds must be a mapping with 'default' and/or 'metrics'") }
        var policy = ThresholdPolicy()
        for (key, value) in mapping {
            switch key.string {
            case "default":
                guard let percent = value.float, percent > 0 else { throw fail(value, "default must be a positive percentage") }
                policy.defaultPercent = percent
            case "metrics":
                guard let entries = value.mapping else {
                    throw fail(value, "metrics must map benchmark[/metric] patterns to percentages")
                }
                for (pattern, percentNode) in entries {
                    guard let name = pattern.string, let percent = percentNode.float, percent > 0 else {
                        throw fail(pattern, "each metric threshold must be a positive percentage")
                    }
                    policy.overrides.append((name, percent))
                }
            default:
                throw fail(key, "unknown key '\(key.string ?? "?")' (allowed: default, metrics)")
            }
        }
        return policy
    }
}

/// One metric of one (system, benchmark) in two runs.
public struct MetricComparison: Codable, Sendable, Equatable {
    public enum Verdict: String, Codable, Sendable {
        case regression, improvement, unchanged
        /// Only in the current run.
        case new
        /// ok in the baseline, and failed, skipped or absent in the current run: the gate fails,
        /// since a benchmark that stopped working is the largest regression there is.
        case lost
        /// Too few rounds for the test ever to reach alpha: neither flagged nor cleared.
        case undecided
    }

    public var system: String
    public var benchmark: String
    public var metric: String
    public var unit: String
    public var better: Better
    public var baselineMedian: Double?
    public var currentMedian: Double?
    /// (current - baseline) / baseline, in percent.
    public var changePercent: Double?
    public var pValue: Double?
    public var thresholdPercent: Double
    public var verdict: Verdict
    public var noisy: Bool
    /// Why a metric is `lost` (the current run's status and reason).
    public var reason: String? = nil
    /// `ab`: the 95% CI of the change, in percent.
    public var changeInterval: [Double]? = nil
    /// The metric whose samples this one transforms (the one tested): the two share a verdict.
    public var sharesVerdictWith: String? = nil

    /// Signed so that positive always means "worse".
    public var worsePercent: Double? { changePercent.map { better == .higher ? -$0 : $0 } }

    /// Records the test's p-value and decides: a regression (or improvement) needs both p below
    /// `alpha` and a change beyond the practical threshold in that direction.
    public mutating func judge(pValue: Double, alpha: Double) {
        self.pValue = pValue
        let worse = worsePercent ?? 0
        if pValue < alpha && worse > thresholdPercent {
            verdict = .regression
        } else if pValue < alpha && -worse > thresholdPercent {
            verdict = .improvement
        } else {
            verdict = .unchanged
        }
    }

    /// Judges a family's first member and gives every member its verdict, p-value and the
    /// family's largest threshold (derived metrics share the verdict of the samples they come from).
    static func judgeFamily(_ members: [MetricComparison], pValue: Double, alpha: Double) -> [MetricComparison] {
        guard var primary = members.first else { return [] }
        let threshold = members.map(\.thresholdPercent).max() ?? primary.thresholdPercent
        primary.thresholdPercent = threshold
        primary.judge(pValue: pValue, alpha: alpha)
        return [primary]
            + members.dropFirst().map { member in
                var shared = member
                shared.thresholdPercent = threshold
                shared.pValue = pValue
                shared.verdict = primary.verdict
                return shared
            }
    }
}

extension ComparisonReport {
    /// The per-round values a test compares: a round (one boot or process per system and
    /// benchmark) is the unit that replicates, so the repetitions inside it are not independent
    /// samples of the build's performance. A run of one round has one value.
    static func roundValues(_ metric: Metric) -> [Double] {
        if let values = metric.roundValues, values.count > 1 { return values }
        return [metric.summary.median]
    }

    /// 2 / C(n1 + n2, n1): the two-sided Mann-Whitney p of the most extreme arrangement.
    static func smallestPValue(_ n1: Int, _ n2: Int) -> Double {
        guard n1 > 0, n2 > 0 else { return 1 }
        var combinations = 1.0
        for k in 0..<min(n1, n2) { combinations = combinations * Double(n1 + n2 - k) / Double(k + 1) }
        return min(1, 2 / combinations)
    }

    /// The fewest rounds per run (both runs alike) with which `hypotheses` tests at `alpha` can
    /// decide anything: Holm's first step needs m · 2 / C(2n, n) < alpha.
    public static func roundsNeeded(hypotheses: Int, alpha: Double) -> Int {
        var rounds = 2
        while rounds < 1000 && smallestPValue(rounds, rounds) * Double(max(1, hypotheses)) >= alpha { rounds += 1 }
        return rounds
    }
}

/// `hvbench compare`: what changed between a baseline and a current run, and whether it matters.
public struct ComparisonReport: Sendable {
    public var baselineLabel: String
    public var currentLabel: String
    public var alpha: Double
    public var incompatibilities: [String]
    public var warnings: [String]
    public var metrics: [MetricComparison]

    public var regressions: [MetricComparison] { metrics.filter { $0.verdict == .regression } }
    public var improvements: [MetricComparison] { metrics.filter { $0.verdict == .improvement } }
    public var lost: [MetricComparison] { metrics.filter { $0.verdict == .lost } }
    public var undecided: [MetricComparison] { metrics.filter { $0.verdict == .undecided } }
    /// What fails the gate: regressions and lost metrics.
    public var failures: [MetricComparison] { metrics.filter { $0.verdict == .regression || $0.verdict == .lost } }

    /// 0 no regression, 2 regression (or a metric lost), 4 improvement only, 5 baseline incompatible.
    public var exitCode: Int32 {
        if !incompatibilities.isEmpty { return 5 }
        if !failures.isEmpty { return 2 }
        if !improvements.isEmpty { return 4 }
        return 0
    }

    /// Environment fields that make two runs incomparable, and fields that only deserve a warning.
    public static func environmentDifferences(_ a: EnvironmentRecord, _ b: EnvironmentRecord) -> (
        blocking: [String], warnings: [String]
    ) {
        var blocking: [String] = []
        var warnings: [String] = []
        func check(_ field: String, _ x: String, _ y: String, blocks: Bool) {
            guard x != y else { return }
            let text = "\(field) differs: baseline \(x), current \(y)"
            if blocks { blocking.append(text) } else { warnings.append(text) }
        }
        check("environment.guestImageHash", a.guestImageHash ?? "-", b.guestImageHash ?? "-", blocks: true)
        check("environment.cpuModel", a.cpuModel, b.cpuModel, blocks: true)
        check("environment.kvm.module", a.kvm.module, b.kvm.module, blocks: true)
        check("environment.logicalCPUs", String(a.logicalCPUs), String(b.logicalCPUs), blocks: true)
        check("environment.kernel", a.kernel, b.kernel, blocks: false)
        check("environment.hostname", a.hostname, b.hostname, blocks: false)
        return (blocking, warnings)
    }

    public static func compare(
        baseline: RunResults, current: RunResults, alpha: Double = 0.01, thresholds: ThresholdPolicy = ThresholdPolicy(),
        baselineLabel: String = "baseline", currentLabel: String = "current"
    ) -> ComparisonReport {
        var (blocking, warnings) = environmentDifferences(baseline.environment, current.environment)
        var metrics: [MetricComparison] = []
        func key(_ r: BenchmarkResult, _ m: Metric) -> String { "\(r.system)|\(r.benchmark)|\(m.name)" }
        var baselineMetrics: [String: (BenchmarkResult, Metric)] = [:]
        for result in baseline.results where result.status == .ok {
            for metric in result.metrics { baselineMetrics[key(result, metric)] = (result, metric) }
        }
        var seen = Set<String>()
        // One hypothesis per family of metrics that are the same samples transformed; its first
        // member with a baseline is tested, the rest share the verdict.
        var tested: [(members: [MetricComparison], before: [Double], after: [Double])] = []
        for result in current.results where result.status == .ok {
            for family in Hypotheses.families(result.metrics) {
                var members: [MetricComparison] = []
                var replicates: (before: [Double], after: [Double])?
                for metric in family.map({ result.metrics[$0] }) {
                    let k = key(result, metric)
                    seen.insert(k)
                    let threshold = thresholds.percent(benchmark: result.benchmark, metric: metric.name)
                    var comparison = MetricComparison(
                        system: result.system, benchmark: result.benchmark, metric: metric.name, unit: metric.unit,
                        better: metric.better,
                        baselineMedian: nil, currentMedian: metric.summary.median, changePercent: nil, pValue: nil,
                        thresholdPercent: threshold, verdict: .new, noisy: metric.summary.noisy)
                    if let (before, _) = baselineMetrics[k], (before.netBackend ?? "vmm") != (result.netBackend ?? "vmm") {
                        // The in-VMM peer and a TAP into the host kernel measure different paths
                        // (a run from before the TAP backend existed used the in-VMM one).
                        let text =
                            "\(result.system) \(result.benchmark): netBackend differs: baseline \(before.netBackend ?? "vmm"), current \(result.netBackend ?? "vmm")"
                        if !blocking.contains(text) { blocking.append(text) }
                    }
                    guard let (_, old) = baselineMetrics[k], old.summary.median != 0 else {
                        metrics.append(comparison)
                        continue
                    }
                    comparison.baselineMedian = old.summary.median
                    comparison.noisy = comparison.noisy || old.summary.noisy
                    comparison.changePercent = (metric.summary.median - old.summary.median) / abs(old.summary.median) * 100
                    if let first = members.first {
                        comparison.sharesVerdictWith = first.metric
                    } else {
                        replicates = (Self.roundValues(old), Self.roundValues(metric))
                    }
                    members.append(comparison)
                }
                if let replicates { tested.append((members, replicates.before, replicates.after)) }
            }
        }
        // Holm over every hypothesis; one whose round counts can never reach alpha at Holm's
        // first step is undecided, never flagged: two runs of too few rounds say "cannot decide".
        let hypotheses = tested.count
        let decidable = tested.map { smallestPValue($0.before.count, $0.after.count) * Double(hypotheses) < alpha }
        let pValues = tested.indices.map { decidable[$0] ? MannWhitney.pValue(tested[$0].before, tested[$0].after) : 1 }
        let adjusted = Hypotheses.holm(pValues)
        var undecided: [String] = []
        for (index, family) in tested.enumerated() {
            if decidable[index] {
                metrics += MetricComparison.judgeFamily(family.members, pValue: adjusted[index], alpha: alpha)
            } else {
                let rounds = "\(family.before.count) and \(family.after.count) round(s)"
                undecided.append(rounds)
                metrics += family.members.map { member in
                    var open = member
                    open.verdict = .undecided
                    open.reason = "cannot decide with \(rounds)"
                    return open
                }
            }
        }
        for (k, (result, metric)) in baselineMetrics.sorted(by: { $0.key < $1.key }) where !seen.contains(k) {
            let now = current.results.first { $0.system == result.system && $0.benchmark == result.benchmark }
            let reason: String
            switch now?.status {
            case nil: reason = "not in the current run"
            case .ok: reason = "the current result has no metric \(metric.name)"
            case .some(let status): reason = "\(status.rawValue) in the current run: \(now?.reason ?? "no reason given")"
            }
            metrics.append(
                MetricComparison(
                    system: result.system, benchmark: result.benchmark, metric: metric.name, unit: metric.unit,
                    better: metric.better,
                    baselineMedian: metric.summary.median, currentMedian: nil, changePercent: nil, pValue: nil,
                    thresholdPercent: thresholds.percent(benchmark: result.benchmark, metric: metric.name), verdict: .lost,
                    noisy: metric.summary.noisy, reason: reason))
        }
        var allWarnings = warnings
        if !undecided.isEmpty {
            let counts = Dictionary(grouping: undecided, by: { $0 }).sorted { $0.key < $1.key }
                .map { "\($0.value.count) with \($0.key)" }.joined(separator: ", ")
            allWarnings.append(
                "cannot decide \(undecided.count) of \(hypotheses) hypotheses (\(counts)): rounds, not repetitions, are "
                    + "what replicates, and at alpha \(alpha) over \(hypotheses) hypotheses each run needs at least "
                    + "\(roundsNeeded(hypotheses: hypotheses, alpha: alpha)) rounds (run --rounds N)")
        }
        for (label, run) in [("baseline", baseline), ("current", current)] {
            if let slowdown = run.injectedSlowdownPercent, slowdown > 0 {
                allWarnings.append("the \(label) run was slowed down on purpose (--inject-slowdown \(slowdown)%)")
            }
        }
        return ComparisonReport(
            baselineLabel: baselineLabel, currentLabel: currentLabel, alpha: alpha, incompatibilities: blocking,
            warnings: allWarnings,
            metrics: metrics)
    }
}
