import ArgumentParser
import Bench
import Results
import Foundation
import Report

/// Options shared by `compare` and `baseline check`.
struct CompareOptions: ParsableArguments {
    @Option(help: "Family-wise significance level (Holm) of the Mann-Whitney U tests over rounds.")
    var alpha: Double = 0.01

    @Option(help: "Practical threshold in percent: smaller changes are never flagged.")
    var threshold: Double?

    @Option(help: "YAML file with a default threshold and per-metric overrides (see README).")
    var thresholds: String?

    @Option(help: "Also write the comparison as Markdown to this file.")
    var markdown: String?

    @Option(help: "Also write the comparison as JUnit XML to this file (one test case per metric).")
    var junit: String?

    func validate() throws {
        guard alpha > 0 && alpha < 1 else { throw ValidationError("--alpha must be between 0 and 1") }
        if let threshold, let problem = Limits.check(threshold, in: Limits.thresholdPercent, "--threshold (percent)") {
            throw ValidationError(problem)
        }
    }

    func policy(default fallback: URL? = nil) throws -> ThresholdPolicy {
        var policy = ThresholdPolicy()
        if let thresholds {
            policy = try ThresholdPolicy.load(from: URL(fileURLWithPath: thresholds))
        } else if let fallback, FileManager.default.fileExists(atPath: fallback.path) {
            policy = try ThresholdPolicy.load(from: fallback)
        }
        if let threshold { policy.defaultPercent = threshold }
        return policy
    }

    /// Prints and writes the comparison; returns the exit status.
    func emit(_ report: ComparisonReport) throws -> Int32 {
        print(ComparisonOutput.terminal(report))
        if let markdown { try writeAtomically(Data(ComparisonOutput.markdown(report).utf8), to: URL(fileURLWithPath: markdown)) }
        if let junit { try writeAtomically(Data(ComparisonOutput.junit(report).utf8), to: URL(fileURLWithPath: junit)) }
        return report.exitCode
    }
}

struct CompareCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare a run with a baseline and flag regressions.",
        discussion: """
            The unit that replicates is the round (one boot or process per system and benchmark), not the
            repetitions inside it: per measured quantity (metrics that transform the same samples, such as
            ns_per_op and throughput, are one hypothesis and share its verdict) a two-sided Mann-Whitney U test
            compares the two runs' per-round values, Holm-corrected over the hypotheses. A metric regresses when
            the adjusted p < --alpha AND the median moved in the worse direction by more than the threshold.
            With too few rounds for the test ever to reach --alpha (a run of one round, or 4 against 4) the
            verdict is UNDECIDED, never a regression, and a warning says how many rounds would decide.
            Exit status: 0 no regression (undecided included), 2 regression, 4 improvement only, 5 baseline
            missing or incompatible (different guest image, CPU, KVM module or CPU count: the field is named).
            """)

    @Argument(
        help: "Baseline: a results.json, a run folder, or store:REF (an id, latest, latest~N; HOST/ before it for one host).")
    var baseline: String

    @Argument(help: "Current: a results.json, a run folder, or store:REF.")
    var current: String

    @OptionGroup var options: CompareOptions
    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        let old: RunResults
        let new: RunResults
        do {
            old = try await RunReference.load(baseline, store: storeOptions)
            new = try await RunReference.load(current, store: storeOptions)
        } catch {
            printError("\(error)")
            throw ExitCode(5)
        }
        let report = ComparisonReport.compare(
            baseline: old, current: new, alpha: options.alpha, thresholds: try options.policy(), baselineLabel: baseline,
            currentLabel: current)
        throw ExitCode(try options.emit(report))
    }
}
