import ArgumentParser
import Foundation
import Report
import Results
import Store

struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a run in a format CI tools or monitoring read.",
        discussion: """
            Formats: github-action-benchmark (writes OUT-smaller.json for customSmallerIsBetter and
            OUT-bigger.json for customBiggerIsBetter: that action takes one direction per file), bencher
            (Bencher Metric Format JSON, for `bencher run --adapter json`), openmetrics (Prometheus/OpenMetrics
            text, for a textfile collector or a push gateway). JUnit comes from compare, ab and baseline check.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case githubActionBenchmark = "github-action-benchmark"
        case bencher, openmetrics
    }

    @Argument(help: "A results.json, a run folder, or store:REF.")
    var run: String

    @Option(help: "github-action-benchmark, bencher or openmetrics.")
    var format: Format

    @Option(help: "Output file (github-action-benchmark: the prefix of its two files). Refuses to overwrite without --force.")
    var out: String

    @Flag(help: "Overwrite existing output files.")
    var force = false

    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        do {
            let results = try await RunReference.load(run, store: storeOptions)
            var files: [(URL, String)] = []
            switch format {
            case .githubActionBenchmark:
                files = [
                    (URL(fileURLWithPath: out + "-smaller.json"), CIExports.githubActionBenchmark(results, better: .lower)),
                    (URL(fileURLWithPath: out + "-bigger.json"), CIExports.githubActionBenchmark(results, better: .higher)),
                ]
            case .bencher: files = [(URL(fileURLWithPath: out), CIExports.bencher(results))]
            case .openmetrics:
                files = [(URL(fileURLWithPath: out), CIExports.openMetrics(results, host: ResultsStore.host(of: results)))]
            }
            for (file, _) in files where !force && FileManager.default.fileExists(atPath: file.path) {
                throw UsageError("\(file.path) exists; give --force to overwrite it")
            }
            for (file, text) in files {
                try writeAtomically(Data(text.utf8), to: file)
                print("wrote \(file.path)")
            }
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
    }
}
