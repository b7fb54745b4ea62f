import Foundation
import GRDB

/// The embedded store: one SQLite file (GRDB), in WAL mode with a busy timeout, so several
/// hvbench processes on one host record into it without corrupting it.
final class SQLiteBackend: SQLBackend, @unchecked Sendable {
    private let queue: DatabaseQueue

    init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        configuration.journalMode = .wal
        do {
            try FileManager.default.createDirectory(
                at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
            queue = try DatabaseQueue(path: path, configuration: configuration)
        } catch {
            throw StoreError("\(path): cannot open the SQLite store: \(error)")
        }
    }

    private static func arguments(_ binds: [SQLValue], claimed: Int64?) -> StatementArguments {
        StatementArguments(
            binds.map { value -> (any DatabaseValueConvertible)? in
                switch value {
                case .integer(let number): number
                case .real(let number): number
                case .text(let string): string
                case .null: nil
                case .claimedID: claimed
                }
            })
    }

    func query(_ statement: SQLStatement, columns: [SQLColumnKind]) async throws -> [[SQLValue]] {
        try await queue.read { db in
            let rows = try Row.fetchAll(db, sql: statement.sql, arguments: Self.arguments(statement.binds, claimed: nil))
            return rows.map { row in Self.values(Array(row.databaseValues), columns) }
        }
    }

    /// A row's cells as the kinds asked for: the schema declares every column's type, so a cell
    /// holds that kind or NULL. (Kept out of line: inlined into the read closure, Swift 6.3's
    /// optimiser crashed on it in release builds.)
    @inline(never)
    static func values(_ cells: [DatabaseValue], _ columns: [SQLColumnKind]) -> [SQLValue] {
        columns.indices.map { index -> SQLValue in
            guard index < cells.count else { return .null }
            switch (cells[index].storage, columns[index]) {
            case (.int64(let number), .integer): return .integer(number)
            case (.double(let number), .real): return .real(number)
            case (.string(let text), .text): return .text(text)
            default: return .null
            }
        }
    }

    func write(prelude: [SQLStatement], claim: SQLStatement?, rest: [SQLStatement]) async throws -> SQLWriteOutcome {
        try await queue.write { db in
            for statement in prelude {
                try db.execute(sql: statement.sql, arguments: Self.arguments(statement.binds, claimed: nil))
            }
            var claimed: Int64?
            if let claim {
                guard let row = try Row.fetchOne(db, sql: claim.sql, arguments: Self.arguments(claim.binds, claimed: nil))
                else { return .claimTaken }
                claimed = row[0]
            }
            for statement in rest {
                try db.execute(sql: statement.sql, arguments: Self.arguments(statement.binds, claimed: claimed))
            }
            return .written(claimed: claimed)
        }
    }

    func migrate(to migrations: [[String]]) async throws -> Int {
        try await queue.write { db in
            try db.execute(sql: "CREATE TABLE IF NOT EXISTS hvbench_schema (version INTEGER NOT NULL)")
            let version = try Int.fetchOne(db, sql: "SELECT MAX(version) FROM hvbench_schema") ?? 0
            guard version <= migrations.count else { return version }
            for (index, migration) in migrations.enumerated().dropFirst(version) {
                for template in migration { try db.execute(sql: SQLDialect.sqlite.render(template)) }
                try db.execute(sql: "INSERT INTO hvbench_schema (version) VALUES (?)", arguments: [index + 1])
            }
            return version
        }
    }

    func close() async { try? queue.close() }
}
