import Foundation

/// How often `ab`'s gate raises a false alarm, and how often it catches a known slowdown, on
/// this host's real noise: from a pool of interleaved one-round runs of the same build — two
/// unslowed arms and arms run with `--inject-slowdown` — many comparisons of `rounds` rounds are
/// drawn (rounds sampled without replacement, A and B's places shuffled per round) and judged
/// exactly as `ab` judges. Comparisons drawn from one pool share rounds, so they are not
/// independent: the rates are resampling estimates, the pool's size bounds what they can say.
public enum GateRates {
    public struct Pool: Sendable {
        /// Per round (in pool order): each arm's one-round run.
        public var rounds: [[String: RunResults]]

        public init(rounds: [[String: RunResults]]) { self.rounds = rounds }

        /// A folder of one-round run folders named ARM-rNNN (scripts/measure/gate-pool); runs
        /// that cannot be read are reported in `problems`, not used.
        public static func load(from folder: URL) -> (pool: Pool, problems: [String]) {
            var byRound: [Int: [String: RunResults]] = [:]
            var problems: [String] = []
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] {
                guard let dash = name.range(of: "-r", options: .backwards), let round = Int(name[dash.upperBound...]) else {
                    continue
                }
                let file = folder.appendingPathComponent(name).appendingPathComponent("results.json")
                guard FileManager.default.fileExists(atPath: file.path) else { continue }
                do { byRound[round, default: [:]][String(name[..<dash.lowerBound])] = try RunResults.load(from: file) } catch {
                    problems.append("\(error)")
                }
            }
            return (Pool(rounds: byRound.keys.sorted().map { byRound[$0]! }), problems)
        }
    }

    public struct Outcome: Sendable {
        public var comparisons = 0
        /// Comparisons in which anything was flagged (any verdict `tally` was told to look for).
        public var anyFlagged = 0
        /// Per hypothesis ("system benchmark metric" of its tested member): comparisons that flagged
        /// it with one of the verdicts counted.
        public var flagged: [String: Int] = [:]
        public var hypotheses = 0

        public var anyFlaggedRate: Double { comparisons > 0 ? Double(anyFlagged) / Double(comparisons) : 0 }
        /// The mean share of hypotheses flagged per comparison.
        public var detectionRate: Double {
            comparisons > 0 && hypotheses > 0 ? Double(flagged.values.reduce(0, +)) / Double(comparisons * hypotheses) : 0
        }

        /// Adds one comparison: whether any of its hypotheses got a verdict in `any`, and which got
        /// one in `counted`.
        mutating func tally(
            _ report: ComparisonReport, any: Set<MetricComparison.Verdict>, counted: Set<MetricComparison.Verdict>
        ) {
            let tested = report.metrics.filter { $0.sharesVerdictWith == nil && $0.verdict != .new }
            hypotheses = max(hypotheses, tested.count)
            comparisons += 1
            if tested.contains(where: { any.contains($0.verdict) }) { anyFlagged += 1 }
            for metric in tested where counted.contains(metric.verdict) {
                flagged["\(metric.system) \(metric.benchmark) \(metric.metric)", default: 0] += 1
            }
        }
    }

    /// `control` arms play A (and, for A/A, both places); `treatment` plays B.
    public static func measure(
        pool: Pool, control: [String], treatment: String, rounds: Int, comparisons: Int, alpha: Double = 0.01,
        thresholds: ThresholdPolicy = ThresholdPolicy(), seed: UInt64 = 1
    ) -> Outcome {
        let usable = pool.rounds.filter { round in (control + [treatment]).allSatisfy { round[$0] != nil } }
        var outcome = Outcome()
        guard usable.count >= rounds, rounds > 0, !control.isEmpty else { return outcome }
        var generator = SplitMix64(seed: seed)
        for _ in 0..<comparisons {
            var chosen = Array(usable.indices)
            chosen.shuffle(using: &generator)
            let pairs = chosen.prefix(rounds).map { index -> (a: RunResults, b: RunResults) in
                let round = usable[index]
                if control.contains(treatment) {
                    // A/A: the two unslowed arms in a random order.
                    let others = control.filter { $0 != treatment }
                    let other = others[Int(generator.next() % UInt64(others.count))]
                    return generator.next() % 2 == 0 ? (round[other]!, round[treatment]!) : (round[treatment]!, round[other]!)
                }
                let a = control[Int(generator.next() % UInt64(control.count))]
                return (round[a]!, round[treatment]!)
            }
            outcome.tally(
                ABComparison.compare(rounds: pairs, alpha: alpha, thresholds: thresholds),
                any: [.regression, .improvement, .lost], counted: [.regression])
        }
        return outcome
    }

    /// `compare` between two runs made one after the other: consecutive blocks of `rounds`
    /// rounds of one unslowed arm (baseline) and the next block of the other (current), each
    /// block combined into a run as `run --rounds` combines its rounds. Unlike `ab`'s pairing,
    /// the drift between the two blocks is part of what is compared.
    public static func measureCompare(
        pool: Pool, arms: (String, String), rounds: Int, alpha: Double = 0.01, thresholds: ThresholdPolicy = ThresholdPolicy()
    ) -> Outcome {
        let usable = pool.rounds.filter { $0[arms.0] != nil && $0[arms.1] != nil }
        var outcome = Outcome()
        guard rounds > 0, usable.count >= 2 * rounds else { return outcome }
        for start in 0...(usable.count - 2 * rounds) {
            let baseline = combined(usable[start..<(start + rounds)].map { $0[arms.0]! })
            let current = combined(usable[(start + rounds)..<(start + 2 * rounds)].map { $0[arms.1]! })
            outcome.tally(
                ComparisonReport.compare(baseline: baseline, current: current, alpha: alpha, thresholds: thresholds),
                any: [.regression, .improvement], counted: [.regression, .improvement])
        }
        return outcome
    }

    /// One-round runs as one run of as many rounds.
    static func combined(_ runs: [RunResults]) -> RunResults {
        var run = runs[0]
        run.results = run.results.map { first in
            BenchmarkResult.combining(
                rounds: runs.compactMap { other in
                    other.results.first { $0.system == first.system && $0.benchmark == first.benchmark }
                })
        }
        return run
    }
}
