import ArgumentParser
import Bench
import Results
import Foundation

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the benchmarks, suites and modes.")

    func run() async throws {
        print("Benchmarks:")
        // Columns as wide as the longest id, so no id is cut.
        let idWidth = BenchmarkDefinition.all.map(\.id.count).max() ?? 0
        for definition in BenchmarkDefinition.all {
            print(
                "  \(definition.id.padding(toLength: idWidth, withPad: " ", startingAt: 0)) \(definition.group.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(definition.summary)"
            )
        }
        print("\nModes:")
        let width = SystemRegistry.all.map(\.name.count).max() ?? 0
        for system in SystemRegistry.modes {
            print("  \(system.name.padding(toLength: width, withPad: " ", startingAt: 0)) \(system.summary)")
        }
        print("\nPeers (--peer; qemu is all of them):")
        for system in SystemRegistry.peers {
            print("  \(system.name.padding(toLength: width, withPad: " ", startingAt: 0)) \(system.summary)")
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
