import ArgumentParser
import Bench
import Foundation
import Report
import Results

struct ABCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ab",
        abstract: "Compare two builds or two sets of options, interleaved round by round in one invocation.",
        discussion: """
            Each round runs A and B once (each a full `hvbench run` of one round), in an order shuffled from
            --seed. Per measured quantity, the round-paired log-ratios ln(B/A) are tested with an exact sign
            test, corrected across metrics with Holm's method; a metric regresses when the adjusted p is below
            --alpha AND B is worse by more than the threshold. Every option `ab` does not know goes to both
            arms' `hvbench run` (e.g. --mode native --bench cpu.int); --a-args/--b-args add arm-specific ones
            (split at spaces). Metrics that are one
            measured quantity transformed (ns_per_op, cycles_per_op, throughput) are one hypothesis and share its
            verdict. Without --rounds, the rounds are sized from the number of hypotheses the first round shows.
            Example self-check: hvbench ab --mode native --bench cpu.int --b-args "--inject-slowdown 10". Exit status as for compare: 0, 2 regression (or a metric B lost),
            4 improvement only.
            """)

    @Option(name: .customLong("a-binary"), help: "hvbench executable for A (default: this one).")
    var aBinary: String?

    @Option(name: .customLong("b-binary"), help: "hvbench executable for B (default: this one).")
    var bBinary: String?

    @Option(name: .customLong("a-args"), parsing: .unconditional, help: "Extra `hvbench run` options for A, separated by spaces.")
    var aArgs: String = ""

    @Option(name: .customLong("b-args"), parsing: .unconditional, help: "Extra `hvbench run` options for B, separated by spaces.")
    var bArgs: String = ""

    @Option(
        help: """
            Rounds (each runs A and B once). Default: sized from the hypotheses the first round shows (one per \
            system, benchmark and measured quantity): the fewest with which a change seen in 4 rounds of 5 passes \
            Holm's correction at --alpha (1 hypothesis: 18; 4: 24; the quick suite's 73: 38).
            """)
    var rounds: Int?

    @Option(help: "Seed of the A/B order per round (default: from the clock; printed).")
    var seed: UInt64?

    @Option(help: "Folder for every round's run folders and the comparison (new or empty; default Results/ab-<time>).")
    var out: String?

    @Option(help: "Family-wise significance level (Holm) of the sign tests.")
    var alpha: Double = 0.01

    @Option(help: "Practical threshold in percent: smaller effects are never flagged.")
    var threshold: Double = 5

    @Option(help: "Also write the comparison as Markdown to this file.")
    var markdown: String?

    @Option(help: "Also write the comparison as JUnit XML to this file.")
    var junit: String?

    @Argument(parsing: .allUnrecognized, help: "Options for both arms' `hvbench run`.")
    var runArguments: [String] = []

    func validate() throws {
        if let rounds, !Limits.rounds.contains(rounds) { throw ValidationError("--rounds must be between 1 and 1000") }
        guard alpha > 0 && alpha < 1 else { throw ValidationError("--alpha must be between 0 and 1") }
        if let problem = Limits.check(threshold, in: Limits.thresholdPercent, "--threshold (percent)") {
            throw ValidationError(problem)
        }
        for reserved in ["--out", "--rounds", "--seed", "--force"] where runArguments.contains(reserved) {
            throw ValidationError("\(reserved) belongs to ab itself, not to the arms' runs")
        }
    }

    func run() async throws {
        let own = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        let folder =
            try out.map { URL(fileURLWithPath: $0) }
            ?? Workspace.locate().results.appendingPathComponent("ab-\(Int(Date().timeIntervalSince1970))")
        do {
            try RunFolder.prepare(folder, replacing: false)
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        let seed = self.seed ?? UInt64(Date().timeIntervalSince1970 * 1000)
        print("ab: \(rounds.map { "\($0) rounds" } ?? "rounds sized after the first"), seed \(seed), folder \(folder.path)")
        struct Arm {
            let name: String
            let binary: String
            let arguments: String
            var extra: [String] { arguments.split(separator: " ").map(String.init) }
            /// "A", plus the binary when it is another build, plus the arm's own options.
            func label(own: String) -> String {
                ([name.uppercased(), binary == own ? "" : binary, arguments].filter { !$0.isEmpty }).joined(separator: " ")
            }
        }
        let arms = [
            Arm(name: "a", binary: aBinary ?? own, arguments: aArgs), Arm(name: "b", binary: bBinary ?? own, arguments: bArgs),
        ]
        var pairs: [(a: RunResults, b: RunResults)] = []
        var total = rounds ?? 1
        var round = 0
        while round < total {
            var measured: [String: RunResults] = [:]
            // A and B in an order shuffled per round, whatever the number of rounds.
            for arm in Schedule.shuffled(count: 2, round: round, seed: seed).map({ arms[$0] }) {
                let runFolder = folder.appendingPathComponent(String(format: "%@-r%03d", arm.name, round + 1))
                // ab's rounds are the replication: each arm's run is one round of its suite.
                let arguments = ["run"] + runArguments + arm.extra + ["--rounds", "1", "--out", runFolder.path]
                let output = try await ProcessRunner.run(arm.binary, arguments, timeout: 86_400)
                // 0: all ok; 1: some benchmark failed (its results are written; the comparison sees it).
                guard output.exitCode == 0 || output.exitCode == 1 else {
                    printError(
                        "round \(round + 1) \(arm.name.uppercased()): \(arm.binary) \(arguments.joined(separator: " ")) "
                            + "\(output.statusDescription): \(output.standardError.suffix(600))")
                    throw ExitCode(2)
                }
                measured[arm.name] = try RunResults.load(path: runFolder.path)
                print("round \(round + 1)/\(total): \(arm.name.uppercased()) done")
            }
            pairs.append((measured["a"]!, measured["b"]!))
            if rounds == nil && round == 0 {
                let hypotheses = ABComparison.hypotheses(in: measured["a"]!)
                total = min(Limits.rounds.upperBound, ABComparison.roundsNeeded(hypotheses: hypotheses, alpha: alpha))
                print("ab: \(hypotheses) hypotheses (one per system, benchmark and measured quantity): \(total) rounds")
            }
            round += 1
        }
        let report = ABComparison.compare(
            rounds: pairs, alpha: alpha, thresholds: ThresholdPolicy(defaultPercent: threshold),
            labels: (arms[0].label(own: own), arms[1].label(own: own)))
        print(ComparisonOutput.terminal(report))
        try writeAtomically(Data(ComparisonOutput.markdown(report).utf8), to: folder.appendingPathComponent("ab.md"))
        if let markdown { try writeAtomically(Data(ComparisonOutput.markdown(report).utf8), to: URL(fileURLWithPath: markdown)) }
        if let junit { try writeAtomically(Data(ComparisonOutput.junit(report).utf8), to: URL(fileURLWithPath: junit)) }
        throw ExitCode(report.exitCode)
    }
}
