import ArgumentParser
import Foundation
import Report
import Results
import Store

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

    @Argument(help: "Folder searched (recursively) for results.json files (or give --store).")
    var folder: String?

    @Option(
        help:
            "Read the runs from a results store instead (sqlite, sqlite:PATH, postgres://…): each host's runs are a history of their own."
    )
    var store: String?

    @Option(help: "With --store: only this host id.")
    var host: String?

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
        guard (folder == nil) != (store == nil) else { throw ValidationError("give a folder or --store, not both") }
        guard (1...10_000).contains(window) else { throw ValidationError("--window must be between 1 and 10000") }
        if let threshold, let problem = Limits.check(threshold, in: Limits.thresholdPercent, "--threshold (percent)") {
            throw ValidationError(problem)
        }
    }

    func run() async throws {
        var policy = ThresholdPolicy()
        if let thresholds { policy = try ThresholdPolicy.load(from: URL(fileURLWithPath: thresholds)) }
        if let threshold { policy.defaultPercent = threshold }
        var histories: [HostHistory] = []
        if let folder {
            let (runs, problems) = HistoryReport.loadRuns(under: URL(fileURLWithPath: folder))
            for problem in problems { printError("skipped: \(problem)") }
            histories = [HostHistory(host: nil, runs: runs.map(\.1))]
        } else {
            do {
                histories = try await HostHistory.load(try StoreOptions.location(store ?? "sqlite"), host: host)
            } catch {
                printError("\(error)")
                throw ExitCode(2)
            }
        }
        guard histories.contains(where: { !$0.runs.isEmpty }) else {
            printError("no runs in \(folder ?? store ?? "")")
            throw ExitCode(2)
        }
        var alarmsByHost: [(host: String?, alarms: [History.Alarm])] = []
        for (host, runs) in histories.map({ ($0.host, $0.runs) }) where !runs.isEmpty {
            let history = History(runs)
            let prefix = host.map { "[\($0)] " } ?? ""
            if let out {
                let file = URL(fileURLWithPath: out).appendingPathComponent(host.map { "history-\($0).html" } ?? "history.html")
                try writeAtomically(Data(HistoryReport.render(runs, history: history).utf8), to: file)
                print("wrote \(file.path) (\(runs.count) runs)")
            }
            for series in history.series {
                for change in series.changePoints {
                    let run = history.runLabels[series.runIndices[change.index]]
                    print(
                        "\(prefix)change point: \(series.key) \(String(format: "%+.1f%%", change.changePercent)) from \(run) "
                            + "(p \(String(format: "%.3f", change.pValue)), \(series.isWorse(change) ? "worse" : "better"))")
                }
            }
            guard check else { continue }
            let alarms = history.alarms(window: window, thresholds: policy)
            for alarm in alarms {
                printError(
                    "\(prefix)regression: \(alarm.series.key) \(String(format: "%+.1f%%", alarm.change.changePercent)) from \(alarm.runLabel) "
                        + "(threshold \(Int(alarm.thresholdPercent))%, p \(String(format: "%.3f", alarm.change.pValue)))")
            }
            alarmsByHost.append((host, alarms))
        }
        guard check else { return }
        // The same regression on several hosts at once: a change in the software, not one host's drift.
        for (key, hosts) in History.sharedAlarms(alarmsByHost.map { ($0.host ?? "-", $0.alarms) }) {
            printError("fleet: \(key) regressed on \(hosts.count) hosts at once: \(hosts.joined(separator: ", "))")
        }
        let total = alarmsByHost.map(\.alarms.count).reduce(0, +)
        let runs = histories.map(\.runs.count).reduce(0, +)
        print(
            "history --check: \(total) regressions starting within the newest \(window) runs (\(runs) runs, \(histories.count) host(s))"
        )
        if total > 0 { throw ExitCode(2) }
    }
}

/// One host's runs, oldest first (host nil: a folder's runs).
struct HostHistory: Sendable {
    var host: String?
    var runs: [RunResults]

    /// From a store: every host's runs, or `host`'s.
    static func load(_ location: ResultsStore.Location, host: String?) async throws -> [HostHistory] {
        try await ResultsStore.using(location) { store in
            var hosts = [String]()
            if let host { hosts = [host] } else { hosts = try await store.hosts() }
            var histories: [HostHistory] = []
            for host in hosts {
                var runs: [RunResults] = []
                for stored in try await store.runs(host: host) { runs.append(try await store.load(id: stored.id)) }
                histories.append(HostHistory(host: host, runs: runs))
            }
            return histories
        }
    }
}
