import Foundation
import Machine
import Synchronization
import TestSupport
import Testing

@testable import Bench
import Results
import Store

/// The fleet end to end, on real runs of the hvbench executable: two "hosts" (processes with
/// their own host ids, running at the same time) record into one PostgreSQL; `history --check`
/// against the store finds the step injected on one of them and only there; `hvbench serve`
/// shows it, drawn by headless Chromium. And a store that is down at the end of a run loses
/// nothing: results.json is written and `store import` catches up.
@Suite(.serialized) struct FleetStoreTests {
    func hvbench(_ arguments: [String]) async throws -> ProcessRunner.Output {
        let executable = try #require(CommandLineTests.executable, "the hvbench executable must be built next to the tests")
        return try await ProcessRunner.run(executable, arguments, timeout: 600)
    }

    func nativeRun(host: String, index: Int, slowed: Bool, store: String, into folder: URL) async throws {
        let output = try await hvbench(
            [
                "run", "--mode", "native", "--bench", "cpu.int", "--iterations", "1000000", "--repetitions", "5", "--rounds", "3",
                "--host-id", host, "--store", store, "--out",
                folder.appendingPathComponent(String(format: "%@-%02d", host, index)).path,
            ] + (slowed ? ["--inject-slowdown", "30"] : []))
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardOutput.contains { $0.hasPrefix("recorded as run ") }, "\(output.standardError)")
        let run = try RunResults.load(path: folder.appendingPathComponent(String(format: "%@-%02d", host, index)).path)
        #expect(run.results.allSatisfy { $0.status == .ok }, "\(host) run \(index): \(run.results.map(\.status))")
    }

    static let unavailableReason: String? =
        TemporaryPostgres.unavailableReason
        ?? (HeadlessChromium.executable == nil ? "needs Chromium for the dashboard (Debian package chromium)" : nil)

    @Test(.enabled(if: unavailableReason == nil, "\(unavailableReason ?? "")"))
    func twoHostsRecordIntoOnePostgresAndTheStepIsFoundAndShown() async throws {
        let server = try TemporaryPostgres.start()
        defer { server.stop() }
        let folder = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        // Host a: six runs at the build's speed, then four with 50% injected; host b: ten plain. Each
        // repetition is a few milliseconds, so the two hosts' runs sharing two cores with the
        // store and the test blur a run's median far less than the step.
        for index in 1...10 {
            async let a: Void = nativeRun(host: "fleet-a", index: index, slowed: index > 6, store: server.url, into: folder)
            async let b: Void = nativeRun(host: "fleet-b", index: index, slowed: false, store: server.url, into: folder)
            _ = try await (a, b)
        }
        let list = try await hvbench(["store", "list", "--store", server.url])
        #expect(list.standardOutput.count == 20, "\(list.standardOutput)")
        let check = try await hvbench(["history", "--store", server.url, "--check"])
        let medians = try (1...10).map { index in
            let run = try RunResults.load(path: folder.appendingPathComponent(String(format: "fleet-a-%02d", index)).path)
            return run.results.first?.metrics.first.map { "\($0.name) \(Int($0.summary.median))" } ?? "none"
        }
        #expect(check.exitCode == 2, "\(check.standardOutput) \(check.standardError) host a: \(medians)")
        #expect(check.standardError.contains("[fleet-a] regression: native cpu.int"), "\(check.standardError) host a: \(medians)")
        #expect(!check.standardError.contains("[fleet-b] regression"), "\(check.standardError)")
        // Compare reads the store too: host a's newest run against its first.
        let compare = try await hvbench(["compare", "store:fleet-a/latest~9", "store:fleet-a/latest", "--store", server.url])
        #expect(compare.standardOutput.contains { $0.contains("ns_per_op") }, "\(compare.standardOutput)")
        try await showInChromium(store: server.url, host: "fleet-a")
    }

    func showInChromium(store: String, host: String) async throws {
        let executable = try #require(CommandLineTests.executable)
        let stop = HostStopRequest()
        let port = Mutex<Int?>(nil)
        let server = Task {
            try await ProcessRunner.run(executable, ["serve", "--store", store, "--port", "0"], timeout: 600, stop: stop) {
                line in
                // "serving STORE at http://127.0.0.1:PORT/"
                if let range = line.range(of: "http://127.0.0.1:") {
                    port.withLock { $0 = Int(line[range.upperBound...].prefix { $0.isNumber }) }
                }
            }
        }
        defer { stop.request() }
        var bound: Int?
        for _ in 0..<600 where bound == nil {
            try await Task.sleep(for: .milliseconds(50))
            bound = port.withLock { $0 }
        }
        let page = "http://127.0.0.1:\(try #require(bound, "serve printed no address"))/hosts/\(host)"
        let dom = try await HeadlessChromium.dom(page)
        #expect(dom.text.contains("class=\"alarm\">native cpu.int"), "\(dom.text.prefix(2000))")
        #expect(dom.text.contains("change-point"))
        #expect(dom.text.contains("href=\"/runs/"))
        let charts = try #require(
            HeadlessChromium.attribute("data-charts-drawn", in: dom.text), "the page script did not run: \(dom.standardError)")
        #expect(charts >= 1)
        #expect(try await HeadlessChromium.dom("http://127.0.0.1:\(bound!)/").text.contains("fleet-b"))
        let png = try await HeadlessChromium.screenshot(page, named: "dashboard.png")
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        #expect(png.count > 20_000)  // a blank page compresses to a few kB
        stop.request()
        _ = try await server.value
    }

    /// The store down at the end of a run: the run is written, the warning says how to catch
    /// up, and `store import` does, once; importing again changes nothing.
    @Test func aStoreThatIsDownLosesNothing() async throws {
        let folder = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        let run = folder.appendingPathComponent("run")
        // Nothing listens on port 1 of the loopback.
        let output = try await hvbench([
            "run", "--mode", "native", "--bench", "cpu.int", "--iterations", "100000", "--repetitions", "3", "--out", run.path,
            "--store", "postgres://hvbench@127.0.0.1:1/none",
        ])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(output.standardError.contains("not recorded in the store"), "\(output.standardError)")
        #expect(output.standardError.contains("hvbench store import \(run.path)"), "\(output.standardError)")
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("results.json").path))
        let store = "sqlite:" + folder.appendingPathComponent("store/results.sqlite").path
        let imported = try await hvbench(["store", "import", folder.path, "--store", store])
        #expect(imported.standardOutput.last == "1 recorded, 0 already there, 0 refused (\(store))", "\(imported.standardOutput)")
        let again = try await hvbench(["store", "import", folder.path, "--store", store])
        #expect(again.standardOutput.last == "0 recorded, 1 already there, 0 refused (\(store))", "\(again.standardOutput)")
        let claims = try await hvbench(["claims", "store:latest", "--store", store])
        #expect(claims.exitCode == 0, "\(claims.standardError)")
        // A baseline marked in the store is the one `baseline check --store` compares with.
        let saved = try await hvbench(["baseline", "save", "store:latest", "--store", store, "--name", "hvbench-test-store"])
        let folderBaseline = try Workspace.locate().results.appendingPathComponent(
            "baselines/\(BaselineStore.hostID(try RunResults.load(path: run.path).environment))/hvbench-test-store.json")
        defer { try? FileManager.default.removeItem(at: folderBaseline) }
        #expect(saved.exitCode == 0, "\(saved.standardError)")
        #expect(saved.standardOutput.contains { $0.hasPrefix("marked as baseline 'hvbench-test-store' of host ") })
        try FileManager.default.removeItem(at: folderBaseline)  // so that only the store can supply it
        let checked = try await hvbench([
            "baseline", "check", "--name", "hvbench-test-store", "--store", store, "--mode", "native", "--bench", "cpu.int",
            "--iterations", "100000", "--repetitions", "3", "--out", folder.appendingPathComponent("checked").path,
        ])
        #expect(checked.exitCode == 0, "\(checked.standardOutput.suffix(4)) \(checked.standardError)")
        #expect(checked.standardOutput.contains { $0.contains("cannot decide") }, "one round against one: undecided")
        let info = try await hvbench(["store", "info", "--store", store])
        #expect(info.standardOutput.first?.contains("schema version \(ResultsStore.schemaVersion)") == true)
        let export = try await hvbench([
            "export", "store:latest", "--store", store, "--format", "openmetrics", "--out",
            folder.appendingPathComponent("m.txt").path,
        ])
        #expect(export.exitCode == 0, "\(export.standardError)")
        let metrics = try String(contentsOf: folder.appendingPathComponent("m.txt"), encoding: .utf8)
        #expect(metrics.contains("hvbench_median{host=") && metrics.hasSuffix("# EOF\n"))
        let refused = try await hvbench([
            "export", "store:latest", "--store", store, "--format", "bencher", "--out",
            folder.appendingPathComponent("m.txt").path,
        ])
        #expect(refused.exitCode == 2 && refused.standardError.contains("--force"))
    }
}
