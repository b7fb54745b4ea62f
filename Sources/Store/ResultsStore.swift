import Foundation
import Results

/// Where runs are kept besides their folders: SQLite by default (a file under Results/), or a
/// PostgreSQL shared by a fleet of benchmark hosts. Recording a run twice does nothing; a store
/// from a newer hvbench is refused; every stored run reads back as the results.json it was.
public final class ResultsStore: Sendable {
    public enum Location: Sendable, Equatable, CustomStringConvertible {
        case sqlite(path: String)
        case postgres(url: String)

        public var description: String {
            switch self {
            case .sqlite(let path): "sqlite:\(path)"
            case .postgres(let url): url.replacingOccurrences(of: #":[^:@/]*@"#, with: "@", options: .regularExpression)
            }
        }

        /// "sqlite" (Results/results.sqlite), "sqlite:PATH", a path ending in .sqlite or .db, or
        /// postgres://user[:password]@host[:port]/database.
        public static func parse(_ text: String, results: URL?) throws -> Location {
            if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") { return .postgres(url: text) }
            if text == "sqlite" || text == "default" {
                guard let results else { throw StoreError("no Results folder for the default store: name a file") }
                return .sqlite(path: results.appendingPathComponent("results.sqlite").path)
            }
            if text.hasPrefix("sqlite:") { return .sqlite(path: String(text.dropFirst("sqlite:".count))) }
            if text.hasSuffix(".sqlite") || text.hasSuffix(".db") { return .sqlite(path: text) }
            throw StoreError(
                "--store \(text): expected sqlite, sqlite:PATH, a .sqlite file or postgres://user@host[:port]/database")
        }
    }

    /// A run as the store lists it.
    public struct StoredRun: Sendable, Equatable {
        public var id: Int64
        public var host: String
        public var startedAt: String
        public var suite: String?
        public var toolVersion: String
        public var gitCommit: String?
        public var source: String?
        public var injectedSlowdown: Int?
    }

    public enum RecordOutcome: Sendable, Equatable {
        case recorded(id: Int64)
        case alreadyRecorded(id: Int64)
    }

    let backend: any SQLBackend
    public let location: Location

    private init(backend: any SQLBackend, location: Location) {
        self.backend = backend
        self.location = location
    }

    /// Opens (creating or migrating) the store.
    public static func open(_ location: Location) async throws -> ResultsStore {
        let backend: any SQLBackend
        switch location {
        case .sqlite(let path): backend = try SQLiteBackend(path: path)
        case .postgres(let url): backend = try await PostgresBackend.connect(url: url)
        }
        let store = ResultsStore(backend: backend, location: location)
        do {
            let from = try await backend.migrate(to: Schema.migrations)
            if from > Schema.version {
                throw StoreError(
                    "\(location): the store's schema is version \(from), newer than this hvbench's (\(Schema.version)); "
                        + "use a newer hvbench (nothing was written)")
            }
        } catch {
            await backend.close()
            throw error is StoreError ? error : StoreError("\(location): cannot migrate the schema: \(error)")
        }
        return store
    }

    public static var schemaVersion: Int { Schema.version }

    /// Opens the store, runs `body` with it, and closes it whether `body` succeeded or threw.
    public static func using<T: Sendable>(_ location: Location, _ body: (ResultsStore) async throws -> T) async throws -> T {
        let store = try await open(location)
        do {
            let value = try await body(store)
            await store.close()
            return value
        } catch {
            await store.close()
            throw error
        }
    }

    public func close() async { await backend.close() }

    /// The host a run is filed under: the id it was run with, else hostname and KVM module.
    public static func host(of run: RunResults) -> String { run.hostID ?? BaselineStore.hostID(run.environment) }

    /// Records a run once: the same run again (same host, start, suite, seed and commit) does
    /// nothing; a different document under the same key is refused.
    @discardableResult
    public func record(_ run: RunResults, source: String? = nil) async throws -> RecordOutcome {
        let host = Self.host(of: run)
        let rows = try RunRows(run: run, host: host, source: source)
        if case .written(let id?) = try await backend.write(prelude: rows.prelude, claim: rows.claim, rest: rows.rest) {
            return .recorded(id: id)
        }
        let existing = try await backend.query(
            SQLStatement("SELECT id, content_hash, source FROM runs WHERE run_key = ?", [.text(RunRows.key(run, host: host))]),
            columns: [.integer, .text, .text])
        guard let row = existing.first, let id = row[0].integer else {
            throw StoreError("\(location): the run was neither recorded nor found")
        }
        let hash = RunRows.contentHash(try run.encoded())
        guard row[1].text == hash else {
            throw StoreError(
                "\(location): a different run with the same host, start time, suite and seed is already stored as run \(id)"
                    + (row[2].text.map { " (from \($0))" } ?? "") + "; nothing was written")
        }
        return .alreadyRecorded(id: id)
    }

    /// Runs oldest first, optionally of one host.
    public func runs(host: String? = nil) async throws -> [StoredRun] {
        let rows = try await backend.query(
            SQLStatement(
                "SELECT id, host_id, started_at, suite, tool_version, git_commit, source, injected_slowdown FROM runs"
                    + (host == nil ? "" : " WHERE host_id = ?") + " ORDER BY started_at, id", host.map { [.text($0)] } ?? []),
            columns: [.integer, .text, .text, .text, .text, .text, .text, .integer])
        return try rows.map { row in
            guard let id = row[0].integer, let host = row[1].text, let started = row[2].text, let version = row[4].text else {
                throw StoreError("\(location): a row of runs lacks its id, host, start or version")
            }
            return StoredRun(
                id: id, host: host, startedAt: started, suite: row[3].text, toolVersion: version, gitCommit: row[5].text,
                source: row[6].text, injectedSlowdown: row[7].integer.map { Int($0) })
        }
    }

    public func hosts() async throws -> [String] {
        try await backend.query(SQLStatement("SELECT id FROM hosts ORDER BY id"), columns: [.text]).compactMap { $0[0].text }
    }

    /// A stored run's results, read back from its document with the file's own checks.
    public func load(id: Int64) async throws -> RunResults {
        let rows = try await backend.query(
            SQLStatement("SELECT document FROM runs WHERE id = ?", [.integer(id)]), columns: [.text])
        guard let document = rows.first?[0].text else { throw StoreError("\(location): no run \(id)", isMissing: true) }
        return try RunResults.decode(Data(document.utf8), source: "\(location) run \(id)")
    }

    /// "ID", "latest" or "latest~N" (N runs before the latest), of `host` when given.
    public func resolve(_ reference: String, host: String? = nil) async throws -> StoredRun {
        let all = try await runs(host: host)
        if let id = Int64(reference) {
            guard let run = all.first(where: { $0.id == id }) else {
                throw StoreError("\(location): no run \(id)\(host.map { " of \($0)" } ?? "")", isMissing: true)
            }
            return run
        }
        var back = 0
        if reference.hasPrefix("latest~"), let count = Int(reference.dropFirst("latest~".count)), count >= 0 {
            back = count
        } else if reference != "latest" {
            throw StoreError("\(reference): expected a run id, latest or latest~N")
        }
        guard back < all.count else {
            throw StoreError(
                "\(location): \(reference): the store holds \(all.count) run(s)\(host.map { " of \($0)" } ?? "")", isMissing: true
            )
        }
        return all[all.count - 1 - back]
    }

    /// Marks stored run `runID` as `host`'s baseline `name` (replacing an earlier one).
    public func saveBaseline(name: String, runID: Int64, host: String) async throws {
        _ = try await backend.write(
            prelude: [
                SQLStatement("DELETE FROM baselines WHERE host_id = ? AND name = ?", [.text(host), .text(name)]),
                SQLStatement(
                    "INSERT INTO baselines (host_id, name, run_id, saved_at) VALUES (?, ?, ?, ?)",
                    [.text(host), .text(name), .integer(runID), .text(ISO8601DateFormatter().string(from: Date()))]),
            ], claim: nil, rest: [])
    }

    public func baseline(name: String, host: String) async throws -> StoredRun? {
        let rows = try await backend.query(
            SQLStatement("SELECT run_id FROM baselines WHERE host_id = ? AND name = ?", [.text(host), .text(name)]),
            columns: [.integer])
        guard let id = rows.first?[0].integer else { return nil }
        return try await resolve(String(id), host: host)
    }
}
