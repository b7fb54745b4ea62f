import Foundation

/// A private PostgreSQL cluster for one test: Debian's server binaries, a data folder under
/// /tmp, trust authentication, listening on 127.0.0.1 at a free port only, stopped and removed
/// by `stop()`. As root the server runs as the `postgres` user (it refuses to run as root).
public final class TemporaryPostgres: @unchecked Sendable {
    public let url: String
    public let port: Int
    let directory: URL
    let binaries: URL

    /// Debian's server binaries (package postgresql), newest version first.
    static var binaryFolder: URL? {
        let root = URL(fileURLWithPath: "/usr/lib/postgresql")
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return versions.sorted { (Int($0) ?? 0) > (Int($1) ?? 0) }.lazy.map { root.appendingPathComponent("\($0)/bin") }
            .first { FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("initdb").path) }
    }

    static var runsAsRoot: Bool { getuid() == 0 }

    /// Why no cluster can be started here; nil when one can.
    public static var unavailableReason: String? {
        guard binaryFolder != nil else {
            return "needs PostgreSQL's server (Debian package postgresql: scripts/setup --with-postgres)"
        }
        if runsAsRoot && getpwnam("postgres") == nil {
            return "running as root and there is no postgres user to run the server as"
        }
        return nil
    }

    public static var available: Bool { unavailableReason == nil }

    /// Runs `tool` from the server's binaries, as the postgres user when root, and waits for it.
    /// posix_spawn and waitpid rather than Foundation's Process, whose exit monitoring missed
    /// pg_ctl's exit here; output goes to a file, not a pipe, since the server pg_ctl starts
    /// inherits the descriptors and keeps them open.
    static func run(_ tool: URL, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let command = runsAsRoot ? ["/usr/sbin/runuser", "-u", "postgres", "--", tool.path] + arguments : [tool.path] + arguments
        let capture = "/tmp/hvbench-pg-\(UUID().uuidString).out"
        defer { unlink(capture) }
        var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, capture, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, command[0], &actions, nil, &argv, environ)
        guard spawned == 0 else {
            throw StartError(description: "cannot run \(command[0]): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (exited, (try? String(contentsOfFile: capture, encoding: .utf8)) ?? "")
    }

    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func start() throws -> TemporaryPostgres {
        guard let binaries = binaryFolder else { throw StartError(description: unavailableReason ?? "no PostgreSQL") }
        let directory = URL(fileURLWithPath: "/tmp/hvbench-postgres-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if runsAsRoot, let user = getpwnam("postgres") {
            chown(directory.path, user.pointee.pw_uid, user.pointee.pw_gid)
        }
        chmod(directory.path, 0o700)
        let data = directory.appendingPathComponent("data")
        let initialised = try run(
            binaries.appendingPathComponent("initdb"),
            ["-D", data.path, "-A", "trust", "-U", "hvbench", "-E", "UTF8", "--no-sync"])
        guard initialised.status == 0 else {
            try? FileManager.default.removeItem(at: directory)
            throw StartError(description: "initdb failed: \(initialised.output.suffix(800))")
        }
        var lastOutput = ""
        for _ in 0..<5 {
            let port = Int.random(in: 20_000...60_000)
            let started = try run(
                binaries.appendingPathComponent("pg_ctl"),
                [
                    "-D", data.path, "-l", directory.appendingPathComponent("server.log").path, "-w", "-t", "60", "-o",
                    "-p \(port) -c listen_addresses=127.0.0.1 -k \(directory.path) -c fsync=off -c max_connections=40",
                    "start",
                ])
            if started.status == 0 {
                return TemporaryPostgres(
                    url: "postgres://hvbench@127.0.0.1:\(port)/postgres", port: port, directory: directory, binaries: binaries)
            }
            lastOutput =
                started.output
                + ((try? String(contentsOf: directory.appendingPathComponent("server.log"), encoding: .utf8)) ?? "")
        }
        try? FileManager.default.removeItem(at: directory)
        throw StartError(description: "the server did not start: \(lastOutput.suffix(800))")
    }

    init(url: String, port: Int, directory: URL, binaries: URL) {
        self.url = url
        self.port = port
        self.directory = directory
        self.binaries = binaries
    }

    /// Stops the server at once (its data is thrown away) and removes its folder.
    public func stop() {
        _ = shutDown(mode: "immediate")
        try? FileManager.default.removeItem(at: directory)
    }

    /// Stops the server and keeps its folder (an outage: the address answers no more); `stop()`
    /// still removes it. True when pg_ctl stopped it.
    public func stopServer() -> Bool { shutDown(mode: "fast") }

    private func shutDown(mode: String) -> Bool {
        let stopped = try? Self.run(
            binaries.appendingPathComponent("pg_ctl"),
            ["-D", directory.appendingPathComponent("data").path, "-m", mode, "-w", "stop"])
        return stopped?.status == 0
    }
}
