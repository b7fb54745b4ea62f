import Foundation
import Logging
import PostgresNIO

/// The fleet's shared store: PostgreSQL over postgres-nio, one connection per hvbench process.
/// An actor, so a transaction's statements never interleave with another task's.
actor PostgresBackend: SQLBackend {
    private let connection: PostgresConnection
    private let logger = Logger(label: "hvbench.store.postgres")
    let location: String

    /// `postgres://user[:password]@host[:port]/database`
    static func connect(url: String) async throws -> PostgresBackend {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
            let host = components.host, !host.isEmpty, let user = components.user, !user.isEmpty
        else {
            throw StoreError(
                "\(ResultsStore.Location.postgres(url: url)): not a PostgreSQL URL (postgres://user[:password]@host[:port]/database)"
            )
        }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw StoreError("\(url): port \(port) is out of range") }
        let database = components.path.split(separator: "/").first.map(String.init)
        let configuration = PostgresConnection.Configuration(
            host: host, port: port, username: user, password: components.password, database: database, tls: .disable)
        let redacted = "postgres://\(user)@\(host):\(port)/\(database ?? user)"
        do {
            let connection = try await PostgresConnection.connect(
                configuration: configuration, id: 1, logger: Logger(label: "hvbench.store.postgres"))
            return PostgresBackend(connection: connection, location: redacted)
        } catch {
            throw StoreError("\(redacted): cannot connect: \(Self.explain(error))")
        }
    }

    private init(connection: PostgresConnection, location: String) {
        self.connection = connection
        self.location = location
    }

    /// postgres-nio's errors hide the server's message from `description` (it may hold data);
    /// the store's errors are read by the person who owns the data, so they show it.
    static func explain(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] {
                return message + (error.serverInfo?[.detail].map { " (\($0))" } ?? "")
            }
            return "\(error.code)" + (error.underlying.map { ": \($0)" } ?? "")
        }
        return "\(error)"
    }

    private func statement(_ statement: SQLStatement, claimed: Int64?) throws -> PostgresQuery {
        var sql = ""
        var number = 0
        for character in statement.sql {
            if character == "?" {
                number += 1
                sql += "$\(number)"
            } else {
                sql.append(character)
            }
        }
        var binds = PostgresBindings(capacity: statement.binds.count)
        for value in statement.binds {
            switch value {
            case .integer(let integer): binds.append(integer)
            case .real(let real): binds.append(real)
            case .text(let text): binds.append(text)
            case .null: binds.appendNull()
            case .claimedID:
                guard let claimed else { throw StoreError("a statement used the claimed id before a claim") }
                binds.append(claimed)
            }
        }
        return PostgresQuery(unsafeSQL: sql, binds: binds)
    }

    private func run(_ text: String) async throws {
        try await connection.query(PostgresQuery(unsafeSQL: text), logger: logger)
    }

    private func rows(_ query: PostgresQuery, columns: [SQLColumnKind]) async throws -> [[SQLValue]] {
        var result: [[SQLValue]] = []
        for try await row in try await connection.query(query, logger: logger) {
            let cells = row.makeRandomAccess()
            result.append(
                try columns.indices.map { index -> SQLValue in
                    switch columns[index] {
                    case .integer: return try cells[index].decode(Int64?.self).map(SQLValue.integer) ?? .null
                    case .real: return try cells[index].decode(Double?.self).map(SQLValue.real) ?? .null
                    case .text: return try cells[index].decode(String?.self).map(SQLValue.text) ?? .null
                    }
                })
        }
        return result
    }

    func query(_ statement: SQLStatement, columns: [SQLColumnKind]) async throws -> [[SQLValue]] {
        do {
            return try await rows(try self.statement(statement, claimed: nil), columns: columns)
        } catch {
            throw StoreError("\(location): \(Self.explain(error))")
        }
    }

    /// BEGIN … COMMIT, rolled back on any error (or when the claim inserted nothing).
    private func transaction<T>(_ body: () async throws -> (T, commit: Bool)) async throws -> T {
        try await run("BEGIN")
        do {
            let (value, commit) = try await body()
            try await run(commit ? "COMMIT" : "ROLLBACK")
            return value
        } catch {
            try? await run("ROLLBACK")
            throw StoreError("\(location): \(Self.explain(error))")
        }
    }

    func write(prelude: [SQLStatement], claim: SQLStatement?, rest: [SQLStatement]) async throws -> SQLWriteOutcome {
        try await transaction {
            for statement in prelude { try await connection.query(try self.statement(statement, claimed: nil), logger: logger) }
            var claimed: Int64?
            if let claim {
                guard let row = try await rows(try self.statement(claim, claimed: nil), columns: [.integer]).first,
                    let id = row[0].integer
                else { return (.claimTaken, false) }
                claimed = id
            }
            for statement in rest { try await connection.query(try self.statement(statement, claimed: claimed), logger: logger) }
            return (.written(claimed: claimed), true)
        }
    }

    func migrate(to migrations: [[String]]) async throws -> Int {
        try await transaction {
            // One migrating writer at a time across the fleet (a transaction-scoped advisory lock).
            try await run("SELECT pg_advisory_xact_lock(7247126)")
            try await run("CREATE TABLE IF NOT EXISTS hvbench_schema (version INTEGER NOT NULL)")
            let version = Int(
                try await rows(PostgresQuery(unsafeSQL: "SELECT MAX(version) FROM hvbench_schema"), columns: [.integer])
                    .first?[0].integer ?? 0)
            guard version <= migrations.count else { return (version, false) }
            for (index, migration) in migrations.enumerated().dropFirst(version) {
                for template in migration { try await run(SQLDialect.postgres.render(template)) }
                var binds = PostgresBindings()
                binds.append(Int64(index + 1))
                try await connection.query(
                    PostgresQuery(unsafeSQL: "INSERT INTO hvbench_schema (version) VALUES ($1)", binds: binds), logger: logger)
            }
            return (version, true)
        }
    }

    func close() async { try? await connection.close() }
}
