import ArgumentParser
import Bench
import Results
import Foundation
import Report

struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Re-render results.json, results.csv, summary.md and report.html from saved results.",
        discussion: """
            With one input the outputs are re-rendered as they were. With several (e.g. runs from
            different hosts), the runs are merged side by side: systems become <host>/<mode> and the
            report shows each host's environment.
            """)

    @Argument(help: "results.json files or run folders.")
    var inputs: [String]

    @Option(help: "Folder for the rendered outputs.")
    var out: String

    func run() async throws {
        let runs: [RunResults]
        do {
            runs = try inputs.map { try RunResults.load(path: $0) }
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        let run = RunResults.merge(runs)
        let claims = (try? Workspace.locate()).flatMap { try? Claim.loadAll(in: $0) } ?? []
        let files = try RunOutput.write(run, to: URL(fileURLWithPath: out), claims: claims)
        for file in files { print("wrote \(file.path)") }
    }
}
