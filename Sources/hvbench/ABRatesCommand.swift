import ArgumentParser
import Foundation
import Results

struct ABRatesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ab-rates",
        abstract: "Measure the A/B gate: false alarms and detection of injected slowdowns, from a pool of interleaved runs.",
        discussion: """
            POOL holds one-round run folders named ARM-rNNN (scripts/measure/gate-pool makes one: per round, the
            same build as arms a1 and a2, and as s5 and s10 with --inject-slowdown 5 and 10, in shuffled order).
            Comparisons of --rounds rounds (default: what ab would choose for the pool's hypotheses) are drawn
            from it and judged as ab judges: A/A between a1 and a2, and each slowed arm against them.
            """)

    @Argument(help: "Folder of ARM-rNNN run folders.")
    var pool: String

    @Option(help: "Comparisons drawn per arm.")
    var comparisons: Int = 200

    @Option(help: "Rounds per comparison (default: ab's own choice for the hypotheses).")
    var rounds: Int?

    @Option(help: "Family-wise significance level, as for ab.")
    var alpha: Double = 0.01

    @Option(help: "Practical threshold in percent, as for ab.")
    var threshold: Double = 5

    func validate() throws {
        guard (1...100_000).contains(comparisons) else { throw ValidationError("--comparisons must be between 1 and 100000") }
        if let rounds, !Limits.rounds.contains(rounds) { throw ValidationError("--rounds must be between 1 and 1000") }
        guard alpha > 0 && alpha < 1 else { throw ValidationError("--alpha must be between 0 and 1") }
    }

    func run() async throws {
        let folder = URL(fileURLWithPath: pool)
        let (pool, problems) = GateRates.Pool.load(from: folder)
        for problem in problems { printError("skipped: \(problem)") }
        guard let first = pool.rounds.first(where: { $0["a1"] != nil }) else {
            printError("\(folder.path): no a1-rNNN run folders")
            throw ExitCode(2)
        }
        let hypotheses = ABComparison.hypotheses(in: first["a1"]!)
        let size = rounds ?? ABComparison.roundsNeeded(hypotheses: hypotheses, alpha: alpha)
        print(
            "pool: \(pool.rounds.count) rounds; \(hypotheses) hypotheses; comparisons of \(size) rounds, \(comparisons) per arm")
        let policy = ThresholdPolicy(defaultPercent: threshold)
        let aa = GateRates.measure(
            pool: pool, control: ["a1", "a2"], treatment: "a2", rounds: size, comparisons: comparisons, alpha: alpha,
            thresholds: policy)
        print(
            "A/A: \(aa.anyFlagged) of \(aa.comparisons) comparisons flagged anything (\(String(format: "%.1f%%", aa.anyFlaggedRate * 100)))"
                + (aa.flagged.isEmpty
                    ? ""
                    : "; regressions: "
                        + aa.flagged.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")))
        for arm in ["s5", "s10"] where pool.rounds.contains(where: { $0[arm] != nil }) {
            let slowed = GateRates.measure(
                pool: pool, control: ["a1", "a2"], treatment: arm, rounds: size, comparisons: comparisons, alpha: alpha,
                thresholds: policy)
            print(
                "\(arm): \(String(format: "%.1f%%", slowed.detectionRate * 100)) of hypotheses flagged as regressions on average; "
                    + "\(slowed.anyFlagged) of \(slowed.comparisons) comparisons flagged something")
            let rarely =
                slowed.flagged.filter { Double($0.value) < 0.5 * Double(slowed.comparisons) }.count
                + max(0, slowed.hypotheses - slowed.flagged.count)
            print("  flagged in under half the comparisons: \(rarely) of \(slowed.hypotheses) hypotheses")
        }
        // compare between runs made one after the other, of as many rounds as decide at all.
        let compareRounds = ComparisonReport.roundsNeeded(hypotheses: hypotheses, alpha: alpha)
        let separate = GateRates.measureCompare(
            pool: pool, arms: ("a1", "a2"), rounds: compareRounds, alpha: alpha, thresholds: policy)
        print(
            "compare, consecutive blocks of \(compareRounds) rounds (A/A): \(separate.anyFlagged) of \(separate.comparisons) "
                + "comparisons flagged something"
                + (separate.flagged.isEmpty
                    ? ""
                    : "; "
                        + separate.flagged.sorted { $0.value > $1.value }.prefix(6).map { "\($0.key) ×\($0.value)" }.joined(
                            separator: ", ")))
    }
}
