import Foundation
import GRDB
import Report
import Store
import TestSupport
import Testing

@testable import Results

func storeEnvironment(hostname: String = "testhost") -> EnvironmentRecord {
    EnvironmentRecord(
        hostname: hostname, cpuModel: "Test CPU @ 2.00GHz", cpuVendor: "GenuineTest", cpuFlags: ["hypervisor"],
        logicalCPUs: 2, memoryMiB: 24576, kernel: "6.1.0-test", operatingSystem: "Debian GNU/Linux 12", runningInVM: true,
        kvm: .init(
            module: "kvm_pvm", devicePresent: true, usable: true, unavailableReason: nil, hardwareVirtualization: false,
            softwareAssisted: true, nestedParameter: nil, tscKHz: 2_000_000),
        tscKHz: 2_000_000, numaAvailable: true, numaNodes: [.init(id: 0, memoryMiB: 24576, cpus: [0, 1])],
        numaNodeUsed: nil, qemuVersion: nil, guestImageHash: "fnv1a64:0123")
}

/// A run of three rounds on `host` started `index` minutes after the epoch, native and
/// hardware-assist cpu.int at `level` ns per operation.
func storedRun(host: String, index: Int, level: Double = 100) -> RunResults {
    func result(_ system: String, _ scale: Double) -> BenchmarkResult {
        let rounds = [level, level * 1.01, level * 0.99].map { $0 * scale }
        return BenchmarkResult(
            system: system, benchmark: "cpu.int", status: .ok, repetitions: 6,
            metrics: [
                Metric(
                    MetricSamples(
                        name: "throughput", unit: "Mops/s", better: .higher, values: rounds.flatMap { [1e3 / $0, 1e3 / $0] }),
                    roundValues: rounds.map { 1e3 / $0 }),
                Metric(
                    MetricSamples(name: "ns_per_op", unit: "ns", better: .lower, values: rounds.flatMap { [$0, $0] }),
                    roundValues: rounds),
            ])
    }
    var run = RunResults(
        tool: ToolInfo(version: "test", gitCommit: "abcdef0123"), startedAt: Date(timeIntervalSince1970: Double(index) * 60),
        suite: "quick", environment: storeEnvironment(),
        results: [
            result("native", 1), result("hardware-assist", 1.2),
            BenchmarkResult(system: "hardware-assist", benchmark: "cpu.syscall", status: .skipped, reason: "not here"),
        ])
    run.hostID = host
    run.schedule = Schedule(
        rounds: 3, seed: UInt64(index),
        order: (1...3).flatMap { round in
            [
                Schedule.Slot(round: round, system: "native", benchmark: "cpu.int"),
                .init(round: round, system: "hardware-assist", benchmark: "cpu.int"),
            ]
        })
    return run
}

/// The checks every store must pass, SQLite and PostgreSQL alike.
func exerciseStore(_ location: ResultsStore.Location) async throws {
    let store = try await ResultsStore.open(location)
    let first = storedRun(host: "host-a", index: 1)
    guard case .recorded(let id) = try await store.record(first, source: "/runs/1") else {
        Issue.record("the first run was not recorded")
        return
    }
    // Idempotent: the same run again is found, not written twice.
    #expect(try await store.record(first, source: "/elsewhere") == .alreadyRecorded(id: id))
    #expect(try await store.runs().count == 1)
    // A different document under the same key is refused, naming the stored run.
    var altered = first
    altered.results[0].metrics[0].summary.median = 1
    await #expect(throws: StoreError.self) { try await store.record(altered) }
    // Read back exactly: every command sees the stored run as the file it was.
    let loaded = try await store.load(id: id)
    #expect(try loaded.encoded() == first.encoded())
    for index in 2...4 { try await store.record(storedRun(host: "host-a", index: index)) }
    try await store.record(storedRun(host: "host-b", index: 1))
    #expect(try await store.hosts() == ["host-a", "host-b"])
    #expect(try await store.runs(host: "host-a").map(\.startedAt) == (1...4).map { storedRun(host: "x", index: $0).startedAt })
    #expect(try await store.resolve("latest", host: "host-a").startedAt == storedRun(host: "x", index: 4).startedAt)
    #expect(try await store.resolve("latest~3", host: "host-a").id == id)
    await #expect(throws: StoreError.self) { try await store.resolve("latest~4", host: "host-a") }
    // Baselines per host.
    try await store.saveBaseline(name: "default", runID: try await store.resolve("latest~1", host: "host-a").id, host: "host-a")
    #expect(try await store.baseline(name: "default", host: "host-a")?.startedAt == storedRun(host: "x", index: 3).startedAt)
    #expect(try await store.baseline(name: "default", host: "host-b") == nil)
    await store.close()
    // Reopening migrates nothing and keeps everything.
    let again = try await ResultsStore.open(location)
    #expect(try await again.runs().count == 5)
    await again.close()
}

/// One statement against a SQLite file behind the store's back; the first column of its first row.
func sql(_ path: String, _ statement: String) throws -> String? {
    try DatabaseQueue(path: path).write { db in
        try Row.fetchOne(db, sql: statement).map { row -> String in
            let value: DatabaseValue = row[0]
            return Int64.fromDatabaseValue(value).map(String.init) ?? String.fromDatabaseValue(value) ?? "\(value)"
        }
    }
}

@Suite struct SQLiteStoreTests {
    func location() -> (ResultsStore.Location, URL) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-store-\(UUID().uuidString)")
        return (.sqlite(path: folder.appendingPathComponent("results.sqlite").path), folder)
    }

    @Test func recordsReadsAndIsIdempotent() async throws {
        let (location, folder) = location()
        defer { try? FileManager.default.removeItem(at: folder) }
        try await exerciseStore(location)
    }

    /// The tables follow results.json: a run's metrics, per-round values, samples and schedule
    /// are rows a fleet can query without reading documents.
    @Test func theRunIsInTheTables() async throws {
        let (location, folder) = location()
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = try await ResultsStore.open(location)
        try await store.record(storedRun(host: "host-a", index: 1))
        await store.close()
        guard case .sqlite(let path) = location else { return }
        func count(_ table: String) throws -> String { try sql(path, "SELECT COUNT(*) FROM \(table)") ?? "-" }
        #expect(try count("results") == "3")
        #expect(try count("metrics") == "4")
        #expect(try count("rounds") == "12")
        #expect(try count("samples") == "24")
        #expect(try count("schedule") == "6")
        #expect(try count("hvbench_schema") == "\(ResultsStore.schemaVersion)")
    }

    /// A store written by a newer hvbench is refused with the versions named, and left alone.
    @Test func aNewerSchemaIsRefused() async throws {
        let (location, folder) = location()
        defer { try? FileManager.default.removeItem(at: folder) }
        try await ResultsStore.open(location).close()
        guard case .sqlite(let path) = location else { return }
        _ = try sql(path, "INSERT INTO hvbench_schema VALUES (99)")
        do {
            try await ResultsStore.open(location).close()
            Issue.record("a store of schema 99 opened")
        } catch {
            #expect(
                "\(error)".contains("schema is version 99, newer than this hvbench's (\(ResultsStore.schemaVersion))"), "\(error)"
            )
        }
    }

    /// A row whose document is not a results file: a clear error naming the store and run.
    @Test func aMalformedRowIsAClearError() async throws {
        let (location, folder) = location()
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = try await ResultsStore.open(location)
        guard case .recorded(let id) = try await store.record(storedRun(host: "h", index: 1)) else { return }
        await store.close()
        guard case .sqlite(let path) = location else { return }
        _ = try sql(path, "UPDATE runs SET document = '{\"schemaVersion\": 2}'")
        let reopened = try await ResultsStore.open(location)
        do {
            _ = try await reopened.load(id: id)
            Issue.record("a malformed document loaded")
        } catch {
            #expect("\(error)".contains("run \(id): missing field"), "\(error)")
        }
        await reopened.close()
    }

    /// Several processes' worth of writers at once: every run once, none lost, none doubled.
    @Test func concurrentWritersNeitherLoseNorDuplicate() async throws {
        let (location, folder) = location()
        defer { try? FileManager.default.removeItem(at: folder) }
        try await ResultsStore.open(location).close()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let store = try await ResultsStore.open(location)
                    // Every writer records the same 6 runs: each must land exactly once.
                    for index in 0..<6 { try await store.record(storedRun(host: "host-\(index % 2)", index: index)) }
                    await store.close()
                }
            }
            try await group.waitForAll()
        }
        let store = try await ResultsStore.open(location)
        #expect(try await store.runs().count == 6)
        await store.close()
    }
}

@Suite(.serialized) struct PostgresStoreTests {
    @Test(.enabled(if: TemporaryPostgres.available, "\(TemporaryPostgres.unavailableReason ?? "")"))
    func recordsReadsAndIsIdempotent() async throws {
        let server = try TemporaryPostgres.start()
        defer { server.stop() }
        try await exerciseStore(.postgres(url: server.url))
        // Two hosts' processes writing at once into one server.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    let store = try await ResultsStore.open(.postgres(url: server.url))
                    for index in 10..<16 {
                        try await store.record(storedRun(host: "fleet-\(index % 2)", index: index))
                    }
                    await store.close()
                }
            }
            try await group.waitForAll()
        }
        let store = try await ResultsStore.open(.postgres(url: server.url))
        #expect(try await store.runs().count == 11)
        await store.close()
    }

    /// The server down: opening fails with the address and the reason, and nothing hangs.
    @Test(.enabled(if: TemporaryPostgres.available, "\(TemporaryPostgres.unavailableReason ?? "")"))
    func aStoreThatIsDownIsAClearError() async throws {
        let server = try TemporaryPostgres.start()
        defer { server.stop() }
        #expect(server.stopServer())
        do {
            try await ResultsStore.open(.postgres(url: server.url)).close()
            Issue.record("opened a stopped server")
        } catch {
            #expect("\(error)".contains("127.0.0.1:\(server.port)"), "\(error)")
            #expect("\(error)".contains("cannot connect"), "\(error)")
        }
    }

    @Test func badURLsAreClearErrors() async throws {
        for url in ["postgres://", "postgres://127.0.0.1/db", "postgres://u@h:99999/db"] {
            await #expect(throws: StoreError.self) { try await ResultsStore.open(.postgres(url: url)) }
        }
        #expect(throws: StoreError.self) { try ResultsStore.Location.parse("mysql://x", results: nil) }
        #expect(try ResultsStore.Location.parse("a/b.sqlite", results: nil) == .sqlite(path: "a/b.sqlite"))
        #expect(
            try ResultsStore.Location.parse("sqlite", results: URL(fileURLWithPath: "/r"))
                == .sqlite(path: "/r/results.sqlite"))
        #expect(ResultsStore.Location.postgres(url: "postgres://u:secret@h/db").description == "postgres://u@h/db")
    }
}
