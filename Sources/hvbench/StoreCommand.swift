import ArgumentParser
import Foundation
import Results
import Store

/// Where a command finds the results store, and the checks on host ids.
struct StoreOptions: ParsableArguments {
    @Option(
        help:
            "Results store: sqlite (Results/results.sqlite), sqlite:PATH or postgres://user@host[:port]/db (default: $HVBENCH_STORE, else sqlite)."
    )
    var store: String?

    func location() throws -> ResultsStore.Location {
        let text = store ?? ProcessInfo.processInfo.environment["HVBENCH_STORE"] ?? "sqlite"
        return try ResultsStore.Location.parse(text, results: try? Workspace.locate().results)
    }

    func open() async throws -> ResultsStore { try await ResultsStore.open(try location()) }

    /// A host id names a folder and a database key: letters, digits, '.', '-', '_', at most 64.
    static func hostIDProblem(_ id: String) -> String? {
        let allowed = id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
        return allowed && (1...64).contains(id.count)
            ? nil : "host id '\(id)' must be 1 to 64 letters, digits, '.', '-' or '_'"
    }

    /// After a run: its folder is written already, so a store that is down or full loses
    /// nothing; the warning says how to catch up.
    static func recordAfterRun(_ run: RunResults, folder: URL, store text: String, results: URL) async {
        do {
            let location = try ResultsStore.Location.parse(text, results: results)
            switch try await ResultsStore.using(location, { try await $0.record(run, source: folder.path) }) {
            case .recorded(let id): print("recorded as run \(id) in \(location)")
            case .alreadyRecorded(let id): print("already in \(location) as run \(id)")
            }
        } catch {
            printError(
                "warning: the run is written to \(folder.path) but not recorded in the store: \(error). "
                    + "Record it later with: hvbench store import \(folder.path) --store \(text)")
        }
    }
}

struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Record runs into a results store (SQLite or PostgreSQL) and list what it holds.",
        subcommands: [Import.self, List.self, Info.self])

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Record run folders (searched recursively for results.json) or results.json files; runs already there are left alone."
        )

        @Argument(help: "Run folders, folders of runs, or results.json files.")
        var paths: [String]

        @OptionGroup var options: StoreOptions

        func run() async throws {
            let store: ResultsStore
            do { store = try await options.open() } catch {
                printError("\(error)")
                throw ExitCode(2)
            }
            var recorded = 0
            var present = 0
            var failed = 0
            for file in RunFiles.find(paths) {
                do {
                    let run = try RunResults.load(from: file)
                    switch try await store.record(run, source: file.deletingLastPathComponent().path) {
                    case .recorded: recorded += 1
                    case .alreadyRecorded: present += 1
                    }
                } catch {
                    printError("\(error)")
                    failed += 1
                }
            }
            await store.close()
            print("\(recorded) recorded, \(present) already there, \(failed) refused (\(store.location))")
            if failed > 0 { throw ExitCode(2) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the stored runs, oldest first.")

        @Option(help: "Only this host id.")
        var host: String?

        @OptionGroup var options: StoreOptions

        func run() async throws {
            do {
                let store = try await options.open()
                let runs = try await store.runs(host: host)
                await store.close()
                for run in runs {
                    print(
                        [
                            String(run.id), run.host, run.startedAt, run.suite ?? "-",
                            run.gitCommit.map { String($0.prefix(7)) } ?? "-",
                            run.injectedSlowdown.map { "slowed \($0)%" } ?? "", run.source ?? "",
                        ].joined(separator: "  "))
                }
            } catch {
                printError("\(error)")
                throw ExitCode(2)
            }
        }
    }

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Where the store is, its schema version, hosts and runs.")

        @OptionGroup var options: StoreOptions

        func run() async throws {
            do {
                let store = try await options.open()
                let hosts = try await store.hosts()
                let runs = try await store.runs()
                await store.close()
                print("store \(store.location), schema version \(ResultsStore.schemaVersion)")
                print("\(runs.count) runs from \(hosts.count) host(s): \(hosts.joined(separator: ", "))")
            } catch {
                printError("\(error)")
                throw ExitCode(2)
            }
        }
    }
}

/// results.json files under the given paths, in path order.
enum RunFiles {
    static func find(_ paths: [String]) -> [URL] {
        var found: [URL] = []
        for path in paths {
            let url = URL(fileURLWithPath: path)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                printError("\(path): no such file or folder")
                continue
            }
            guard isDirectory.boolValue else {
                found.append(url)
                continue
            }
            let enumerator = FileManager.default.enumerator(at: url, includingPropertiesForKeys: nil)
            while let next = enumerator?.nextObject() as? URL {
                if next.lastPathComponent == "results.json" { found.append(next) }
            }
        }
        return found.sorted { $0.path < $1.path }
    }
}

/// A run named on the command line: a results.json or run folder, or `store:REF` — a run of the
/// store, REF being an id, `latest`, `latest~N`, or either after `HOST/` (that host's runs).
enum RunReference {
    static func load(_ text: String, store options: StoreOptions) async throws -> RunResults {
        guard text.hasPrefix("store:") else { return try RunResults.load(path: text) }
        var reference = String(text.dropFirst("store:".count))
        var host: String?
        if let slash = reference.lastIndex(of: "/") {
            host = String(reference[..<slash])
            reference = String(reference[reference.index(after: slash)...])
        }
        return try await ResultsStore.using(try options.location()) { store in
            try await store.load(id: try await store.resolve(reference, host: host).id)
        }
    }
}
