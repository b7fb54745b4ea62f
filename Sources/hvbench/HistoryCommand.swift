import ArgumentParser
import Bench
import Results
import Foundation
import Report

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "Turn a folder of runs into an HTML trend report (history.html).")

    @Argument(help: "Folder searched (recursively) for results.json files.")
    var folder: String

    @Option(help: "Output folder for history.html.")
    var out: String

    @OptionGroup var compareOptions: CompareOptions

    func run() async throws {
        let (runs, problems) = HistoryReport.loadRuns(under: URL(fileURLWithPath: folder))
        for problem in problems { printError("skipped: \(problem)") }
        guard !runs.isEmpty else {
            printError("no results.json under \(folder)")
            throw ExitCode(2)
        }
        let html = HistoryReport.render(runs.map(\.1), alpha: compareOptions.alpha, thresholds: try compareOptions.policy())
        let file = URL(fileURLWithPath: out).appendingPathComponent("history.html")
        try writeAtomically(Data(html.utf8), to: file)
        print("wrote \(file.path) (\(runs.count) runs)")
    }
}
