import ArgumentParser
import Bench
import Results
import Foundation
import Report

/// Options shared by `compare` and `baseline check`.
struct CompareOptions: ParsableArguments {
    @Option(help: "Significance level of the two-sided Mann-Whitney U test.")
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
            A metric regresses when the two-sided Mann-Whitney U test on the repetitions says the runs
            differ (p < --alpha) AND the median moved in the worse direction by more than the threshold.
            Exit status: 0 no regression, 2 regression, 4 improvement only, 5 baseline missing or
            incompatible (different guest image, CPU, KVM module or CPU count: the field is named).
            """)

    @Argument(help: "Baseline: a results.json or a run folder.")
    var baseline: String

    @Argument(help: "Current: a results.json or a run folder.")
    var current: String

    @OptionGroup var options: CompareOptions

    func run() async throws {
        let old: RunResults
        let new: RunResults
        do {
            old = try RunResults.load(path: baseline)
            new = try RunResults.load(path: current)
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
