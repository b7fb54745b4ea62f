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

struct BaselineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baseline",
        abstract: "Keep CI baselines under Results/baselines/<host-id>/ and check runs against them.",
        subcommands: [Save.self, Check.self])

    static func hostID(_ environment: EnvironmentRecord) -> String {
        let raw = "\(environment.hostname)-\(environment.kvm.module)"
        return String(raw.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
    }

    static func folder(for environment: EnvironmentRecord, in workspace: Workspace) -> URL {
        workspace.results.appendingPathComponent("baselines/\(hostID(environment))")
    }

    struct Save: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Save a run as this host's baseline.",
            discussion: """
                With several runs of the same build (A/A), the first becomes the baseline and the spread of
                their medians calibrates per-metric thresholds into thresholds.yaml beside it: on a host whose
                performance drifts between runs, a fixed threshold would flag the drift as regressions.
                """)

        @Argument(help: "results.json files or run folders; several calibrate thresholds.yaml.")
        var runs: [String]

        @Option(help: "Baseline name.")
        var name: String = "default"

        @Option(help: "Smallest threshold written, in percent.")
        var threshold: Double = 5

        // The spread of a few runs underestimates the tails, and one compare tests ~25 metrics at
        // once: at 1.5x, a fifth A/A run still tripped one metric here; 2x keeps false alarms rare.
        @Option(help: "Threshold = margin x the spread of the runs' medians.")
        var margin: Double = 2

        func validate() throws {
            if let problem = Limits.check(threshold, in: Limits.thresholdPercent, "--threshold (percent)")
                ?? Limits.check(margin, in: Limits.margin, "--margin")
            {
                throw ValidationError(problem)
            }
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw ValidationError("--name must be letters, digits, '-' or '_' (got '\(name)')")
            }
        }

        func run() async throws {
            do {
                let results = try runs.map { try RunResults.load(path: $0) }
                for (path, run) in zip(runs, results) where run.injectedSlowdownPercent ?? 0 > 0 {
                    throw UsageError(
                        "\(path) was slowed down on purpose (--inject-slowdown \(run.injectedSlowdownPercent ?? 0)): "
                            + "it is not this host's performance and cannot be a baseline")
                }
                let folder = BaselineCommand.folder(for: results[0].environment, in: try Workspace.locate())
                let file = folder.appendingPathComponent("\(name).json")
                try writeAtomically(try results[0].encoded(), to: file)
                print("saved \(file.path)")
                guard results.count > 1 else { return }
                let (policy, spreads) = ThresholdPolicy.calibrated(from: results, defaultPercent: threshold, margin: margin)
                let thresholds = folder.appendingPathComponent("thresholds.yaml")
                let header =
                    "# Calibrated by `hvbench baseline save` from \(results.count) runs of the same build:\n"
                    + "# threshold = max(\(Int(threshold))%, \(margin) x the spread of the runs' medians).\n"
                try writeAtomically(Data((header + policy.yaml).utf8), to: thresholds)
                print("wrote \(thresholds.path); run-to-run spread of medians:")
                for (key, spread) in spreads {
                    let parts = key.split(separator: "/").map(String.init)
                    let applied = policy.percent(benchmark: parts[0], metric: parts.count > 1 ? parts[1] : "")
                    print(
                        "  \(key.padding(toLength: 30, withPad: " ", startingAt: 0)) \(String(format: "%5.1f%%", spread)) -> threshold \(Int(applied))%"
                    )
                }
            } catch {
                printError("\(error)")
                throw ExitCode(2)
            }
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the suite and compare it with this host's baseline in one step.",
            discussion: "Uses Results/baselines/<host-id>/thresholds.yaml when present. Exit status as for compare.")

        @Option(help: "Baseline name.")
        var name: String = "default"

        @OptionGroup var runOptions: RunOptions
        @OptionGroup var compareOptions: CompareOptions

        func run() async throws {
            let workspace = try Workspace.locate()
            let environment = EnvironmentRecord.capture(guestImageHash: nil)
            let folder = BaselineCommand.folder(for: environment, in: workspace)
            let file = folder.appendingPathComponent("\(name).json")
            let baseline: RunResults
            do {
                baseline = try RunResults.load(from: file)
            } catch {
                printError(
                    "no usable baseline for this host (\(error)); create one with: hvbench baseline save RUN --name \(name)")
                throw ExitCode(5)
            }
            let (current, output) = try await runOptions.performRun()
            let report = ComparisonReport.compare(
                baseline: baseline, current: current, alpha: compareOptions.alpha,
                thresholds: try compareOptions.policy(default: folder.appendingPathComponent("thresholds.yaml")),
                baselineLabel: "baseline \(name)", currentLabel: output.lastPathComponent)
            try writeAtomically(Data(ComparisonOutput.markdown(report).utf8), to: output.appendingPathComponent("compare.md"))
            try writeAtomically(Data(ComparisonOutput.junit(report).utf8), to: output.appendingPathComponent("compare-junit.xml"))
            throw ExitCode(try compareOptions.emit(report))
        }
    }
}
