import ArgumentParser
import Bench
import Results
import Store
import Foundation
import Report

struct BaselineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baseline",
        abstract: "Keep CI baselines under Results/baselines/<host-id>/ and check runs against them.",
        subcommands: [Save.self, Check.self])

    struct Save: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Save a run as this host's baseline.",
            discussion: """
                With several runs of the same build (A/A), the first becomes the baseline and the spread of
                their medians calibrates per-metric thresholds into thresholds.yaml beside it: on a host whose
                performance drifts between runs, a fixed threshold would flag the drift as regressions.
                """)

        @Argument(help: "results.json files, run folders or store:REF runs; several calibrate thresholds.yaml.")
        var runs: [String]

        @OptionGroup var storeOptions: StoreOptions

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
                var results: [RunResults] = []
                for reference in runs { results.append(try await RunReference.load(reference, store: storeOptions)) }
                for (path, run) in zip(runs, results) where run.injectedSlowdownPercent ?? 0 > 0 {
                    throw UsageError(
                        "\(path) was slowed down on purpose (--inject-slowdown \(run.injectedSlowdownPercent ?? 0)): "
                            + "it is not this host's performance and cannot be a baseline")
                }
                let folder = BaselineStore.folder(for: results[0].environment, in: try Workspace.locate())
                let file = folder.appendingPathComponent("\(name).json")
                try writeAtomically(try results[0].encoded(), to: file)
                print("saved \(file.path)")
                if storeOptions.named != nil {
                    // Also the store's baseline of the run's host, which `baseline check --store` reads.
                    let location = try storeOptions.location()
                    let host = ResultsStore.host(of: results[0])
                    try await ResultsStore.using(location) { store in
                        switch try await store.record(results[0], source: runs[0]) {
                        case .recorded(let id), .alreadyRecorded(let id):
                            try await store.saveBaseline(name: name, runID: id, host: host)
                        }
                    }
                    print("marked as baseline '\(name)' of host \(host) in \(location)")
                }
                guard results.count > 1 else { return }
                let (policy, spreads) = ThresholdPolicy.calibrated(from: results, defaultPercent: threshold, margin: margin)
                let thresholds = BaselineStore.thresholds(in: folder)
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
            discussion: """
                With --store (or $HVBENCH_STORE), the baseline is the one `baseline save --store` marked for this \
                host in the store, else Results/baselines/<host-id>/NAME.json. Uses \
                Results/baselines/<host-id>/thresholds.yaml when present. Exit status as for compare.
                """)

        @Option(help: "Baseline name.")
        var name: String = "default"

        @OptionGroup var runOptions: RunOptions
        @OptionGroup var compareOptions: CompareOptions

        /// With a store (--store or $HVBENCH_STORE), the baseline `baseline save` marked there for
        /// this host; nil when the store has none (the folder's is used).
        func storedBaseline(_ environment: EnvironmentRecord) async throws -> RunResults? {
            guard let text = runOptions.namedStore else { return nil }
            let host = runOptions.namedHostID ?? BaselineStore.hostID(environment)
            return try await ResultsStore.using(try StoreOptions.location(text)) { store in
                guard let stored = try await store.baseline(name: name, host: host) else { return nil }
                return try await store.load(id: stored.id)
            }
        }

        func run() async throws {
            let workspace = try Workspace.locate()
            let environment = EnvironmentRecord.capture(guestImageHash: nil)
            let folder = BaselineStore.folder(for: environment, in: workspace)
            let file = folder.appendingPathComponent("\(name).json")
            let baseline: RunResults
            do {
                baseline = try await storedBaseline(environment) ?? RunResults.load(from: file)
            } catch {
                printError(
                    "no usable baseline for this host (\(error)); create one with: hvbench baseline save RUN --name \(name)")
                throw ExitCode(5)
            }
            let (current, output) = try await runOptions.performRun()
            let report = ComparisonReport.compare(
                baseline: baseline, current: current, alpha: compareOptions.alpha,
                thresholds: try compareOptions.policy(default: BaselineStore.thresholds(in: folder)),
                baselineLabel: "baseline \(name)", currentLabel: output.lastPathComponent)
            try writeAtomically(Data(ComparisonOutput.markdown(report).utf8), to: output.appendingPathComponent("compare.md"))
            try writeAtomically(Data(ComparisonOutput.junit(report).utf8), to: output.appendingPathComponent("compare-junit.xml"))
            throw ExitCode(try compareOptions.emit(report))
        }
    }
}
