/// A value bound to a statement or read from a row: the four kinds the schema uses.
public enum SQLValue: Sendable, Equatable {
    case integer(Int64)
    case real(Double)
    case text(String)
    case null
    /// In a write's statements after its claim: the id of the row the claim inserted.
    case claimedID

    public var integer: Int64? { if case .integer(let value) = self { value } else { nil } }
    public var text: String? { if case .text(let value) = self { value } else { nil } }
}

/// One SQL statement with `?` placeholders (numbered `$n` for PostgreSQL by its backend).
public struct SQLStatement: Sendable {
    public var sql: String
    public var binds: [SQLValue]

    public init(_ sql: String, _ binds: [SQLValue] = []) {
        self.sql = sql
        self.binds = binds
    }
}

/// What the store needs of a database: the two dialects differ only below this line.
protocol SQLBackend: Sendable {
    /// Rows of a read, each cell in the kind `columns` names.
    func query(_ statement: SQLStatement, columns: [SQLColumnKind]) async throws -> [[SQLValue]]
    /// In one transaction: `prelude`, then `claim` (an insert returning the id of the row it
    /// inserted, which `rest` may bind as `.claimedID`), then `rest`.
    func write(prelude: [SQLStatement], claim: SQLStatement?, rest: [SQLStatement]) async throws -> SQLWriteOutcome
    /// Applies the migrations past the store's version in one transaction that holds the store
    /// against other migrating writers; returns the version the store had (one above the known
    /// migrations means a newer hvbench wrote it, and nothing is applied).
    func migrate(to migrations: [[String]]) async throws -> Int
    func close() async
}

enum SQLWriteOutcome: Sendable, Equatable {
    /// Everything was written; `claimed` is the id the claim's row got (nil without a claim).
    case written(claimed: Int64?)
    /// The claim inserted nothing (its row was there): the transaction ended there, nothing written.
    case claimTaken
}

enum SQLColumnKind: Sendable { case integer, real, text }

enum SQLDialect: Sendable {
    case sqlite, postgres

    /// Fills the schema templates: an auto-numbered key and a floating-point column.
    func render(_ template: String) -> String {
        switch self {
        case .sqlite:
            template.replacingOccurrences(of: "{serial}", with: "INTEGER PRIMARY KEY AUTOINCREMENT")
                .replacingOccurrences(of: "{real}", with: "REAL")
        case .postgres:
            template.replacingOccurrences(of: "{serial}", with: "BIGSERIAL PRIMARY KEY")
                .replacingOccurrences(of: "{real}", with: "DOUBLE PRECISION")
        }
    }
}

/// Errors the store raises, each naming what it could not do.
public struct StoreError: Error, CustomStringConvertible {
    public let description: String
    /// The run or host asked for is not in the store (the dashboard answers 404).
    public let isMissing: Bool
    public init(_ description: String, isMissing: Bool = false) {
        self.description = description
        self.isMissing = isMissing
    }
}
