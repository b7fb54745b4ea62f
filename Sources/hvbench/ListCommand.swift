import ArgumentParser
import Bench
import Results
import Foundation

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the benchmarks, suites and modes.")

    func run() async throws {
        print("Benchmarks:")
        for definition in BenchmarkDefinition.all {
            print(
                "  \(definition.id.padding(toLength: 15, withPad: " ", startingAt: 0)) \(definition.group.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(definition.summary)"
            )
        }
        print("\nModes:")
        for system in SystemKind.allCases {
            print(
                "  \(system.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0)) \(system.summary)"
            )
        }
        if let workspace = try? Workspace.locate() {
            print("\nSuites (\(workspace.suites.path)):")
            let files =
                (try? FileManager.default.contentsOfDirectory(atPath: workspace.suites.path))?.filter { $0.hasSuffix(".yaml") }
                .sorted() ?? []
            for file in files {
                let url = workspace.suites.appendingPathComponent(file)
                do {
                    let suite = try Suite.load(from: url)
                    print(
                        "  \(suite.name.padding(toLength: 8, withPad: " ", startingAt: 0)) \(suite.entries.count) benchmarks. \(suite.description)"
                    )
                } catch {
                    print("  \(file): INVALID: \(error)")
                }
            }
        }
    }
}
