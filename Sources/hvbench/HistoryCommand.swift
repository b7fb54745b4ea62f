import ArgumentParser
import Foundation
import Report
import Results

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Find change points in a folder of runs over time; draw them (history.html) or gate on them (--check).",
        discussion: """
            Each metric is a series of per-run medians, oldest first. Change points are found by E-divisive
            means with a permutation test (p < 0.05; regimes of at least 3 runs), so run-to-run drift without a
            lasting step raises nothing, and a step becomes visible once 3 runs sit on the new level.
            --check exits 2 when a change in the worse direction, larger than the metric's threshold, starts at
            one of the newest --window runs; 0 otherwise.
            """)

    @Argument(help: "Folder searched (recursively) for results.json files.")
    var folder: String

    @Option(help: "Output folder for history.html.")
    var out: String?

    @Flag(help: "Exit 2 when a significant change for the worse starts at one of the newest runs.")
    var check = false

    @Option(help: "--check looks at change points starting within this many newest runs.")
    var window: Int = 5

    @Option(help: "Practical threshold in percent: smaller steps never fail --check.")
    var threshold: Double?

    @Option(help: "YAML file with a default threshold and per-metric overrides (as for compare).")
    var thresholds: String?

    func validate() throws {
        guard out != nil || check else { throw ValidationError("give --out DIR, --check, or both") }
        guard (1...10_000).contains(window) else { throw ValidationError("--window must be between 1 and 10000") }
        if let threshold, let problem = Limits.check(threshold, in: Limits.thresholdPercent, "--threshold (percent)") {
            throw ValidationError(problem)
        }
    }

    func run() async throws {
        let (runs, problems) = HistoryReport.loadRuns(under: URL(fileURLWithPath: folder))
        for problem in problems { printError("skipped: \(problem)") }
        guard !runs.isEmpty else {
            printError("no results.json under \(folder)")
            throw ExitCode(2)
        }
        let history = History(runs.map(\.1))
        if let out {
            let file = URL(fileURLWithPath: out).appendingPathComponent("history.html")
            try writeAtomically(Data(HistoryReport.render(runs.map(\.1), history: history).utf8), to: file)
            print("wrote \(file.path) (\(runs.count) runs)")
        }
        for series in history.series {
            for change in series.changePoints {
                let run = history.runLabels[series.runIndices[change.index]]
                print(
                    "change point: \(series.key) \(String(format: "%+.1f%%", change.changePercent)) from \(run) "
                        + "(p \(String(format: "%.3f", change.pValue)), \(series.isWorse(change) ? "worse" : "better"))")
            }
        }
        guard check else { return }
        var policy = ThresholdPolicy()
        if let thresholds { policy = try ThresholdPolicy.load(from: URL(fileURLWithPath: thresholds)) }
        if let threshold { policy.defaultPercent = threshold }
        let alarms = history.alarms(window: window, thresholds: policy)
        for alarm in alarms {
            printError(
                "regression: \(alarm.series.key) \(String(format: "%+.1f%%", alarm.change.changePercent)) from \(alarm.runLabel) "
                    + "(threshold \(Int(alarm.thresholdPercent))%, p \(String(format: "%.3f", alarm.change.pValue)))")
        }
        print("history --check: \(alarms.count) regressions starting within the newest \(window) of \(runs.count) runs")
        if !alarms.isEmpty { throw ExitCode(2) }
    }
}
