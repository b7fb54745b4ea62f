import ArgumentParser
import Foundation
import Report
import Results
import Store

/// Where a command finds the results store, and the checks on host ids.
struct StoreOptions: ParsableArguments {
    @Option(
        help:
            "Results store: sqlite (Results/results.sqlite), sqlite:PATH or postgres://user@host[:port]/db (default: $HVBENCH_STORE, else sqlite)."
    )
    var store: String?

    /// The store named by --store or $HVBENCH_STORE; nil when neither names one.
    var named: String? { store ?? Self.environmentStore }

    static var environmentStore: String? { ProcessInfo.processInfo.environment["HVBENCH_STORE"] }
    static var environmentHostID: String? { ProcessInfo.processInfo.environment["HVBENCH_HOST_ID"] }

    func location() throws -> ResultsStore.Location { try Self.location(named ?? "sqlite") }

    /// A store's text (sqlite, sqlite:PATH, postgres://…), the default file under this workspace's Results/.
    static func location(_ text: String) throws -> ResultsStore.Location {
        try ResultsStore.Location.parse(text, results: try? Workspace.locate().results)
    }

    /// A host id names a folder and a database key: letters, digits, '.', '-', '_', at most 64.
    static func hostIDProblem(_ id: String) -> String? {
        let allowed = id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
        return allowed && (1...64).contains(id.count)
            ? nil : "host id '\(id)' must be 1 to 64 letters, digits, '.', '-' or '_'"
    }

    /// After a run: its folder is written already, so a store that is down or full loses
    /// nothing; the warning says how to catch up.
    static func recordAfterRun(_ run: RunResults, folder: URL, store text: String) async {
        do {
            let location = try location(text)
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
            // Folders are searched as `history` searches them (oldest run first); files are read as given.
            var runs: [(URL, RunResults)] = []
            var failed = 0
            for path in paths {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                    printError("\(path): no such file or folder")
                    failed += 1
                    continue
                }
                if isDirectory.boolValue {
                    let (found, problems) = HistoryReport.loadRuns(under: URL(fileURLWithPath: path))
                    for problem in problems { printError(problem) }
                    runs += found
                    failed += problems.count
                } else {
                    do { runs.append((URL(fileURLWithPath: path), try RunResults.load(path: path))) } catch {
                        printError("\(error)")
                        failed += 1
                    }
                }
            }
            do {
                let location = try options.location()
                let (recorded, present, refused) = try await ResultsStore.using(location) { store in
                    var counts = (recorded: 0, present: 0, refused: 0)
                    for (file, run) in runs {
                        do {
                            switch try await store.record(run, source: file.deletingLastPathComponent().path) {
                            case .recorded: counts.recorded += 1
                            case .alreadyRecorded: counts.present += 1
                            }
                        } catch {
                            printError("\(error)")
                            counts.refused += 1
                        }
                    }
                    return counts
                }
                failed += refused
                print("\(recorded) recorded, \(present) already there, \(failed) refused (\(location))")
            } catch {
                printError("\(error)")
                throw ExitCode(2)
            }
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
                for run in try await ResultsStore.using(try options.location(), { try await $0.runs(host: host) }) {
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
                let location = try options.location()
                let (hosts, runs) = try await ResultsStore.using(location) { (try await $0.hosts(), try await $0.runs()) }
                print("store \(location), schema version \(ResultsStore.schemaVersion)")
                print("\(runs.count) runs from \(hosts.count) host(s): \(hosts.joined(separator: ", "))")
            } catch {
                printError("\(error)")
                throw ExitCode(2)
            }
        }
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
