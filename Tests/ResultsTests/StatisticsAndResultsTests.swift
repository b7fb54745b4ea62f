import CSV
import Foundation
import Testing

@testable import Results
@testable import Report

@Suite struct StatisticsTests {
    @Test func summarisesKnownValues() {
        let summary = Summary([2, 4, 4, 4, 5, 5, 7, 9])
        #expect(summary.median == 4.5)
        #expect(summary.mean == 5)
        #expect(abs(summary.stddev - 2.138) < 0.001)  // sample standard deviation
        #expect(abs(summary.cv - 0.4276) < 0.001)
        #expect(summary.min == 2 && summary.max == 9)
        #expect(summary.ci95Low <= summary.median && summary.median <= summary.ci95High)
        #expect(summary.ci95Low >= 2 && summary.ci95High <= 9)
    }

    @Test func oneSampleHasADegenerateInterval() {
        let summary = Summary([3.5])
        #expect(summary.median == 3.5 && summary.stddev == 0 && summary.ci95Low == 3.5 && summary.ci95High == 3.5)
    }

    @Test func intervalsAreReproducible() {
        let samples = [10.0, 11, 9.5, 10.2, 30, 10.1, 9.9]
        #expect(Summary(samples) == Summary(samples))
    }

    @Test func quantileInterpolates() {
        #expect(Summary.quantile([1, 2, 3, 4], 0.5) == 2.5)
        #expect(Summary.quantile([1, 2, 3, 4], 1) == 4)
    }
}

@Suite struct MetricDerivationTests {
    @Test func convertsCyclesWithTheTSCFrequency() throws {
        // 1 GHz TSC: 2000 cycles for 100 ops = 20 ns/op.
        let samples = [BenchmarkTranscript.Sample(operations: 100, cycles: 2000, bytes: 0)]
        let metrics = MetricDerivation.metrics(for: "cpu.pio", samples: samples, tscHertz: 1e9)
        #expect(metrics.map(\.name) == ["ns_per_op", "cycles_per_op"])
        #expect(metrics[0].values == [20] && metrics[1].values == [20])
        let throughput = MetricDerivation.metrics(for: "cpu.int", samples: samples, tscHertz: 1e9)[0]
        #expect(throughput.name == "throughput" && throughput.better == .higher && throughput.values == [50])  // 100 ops / 2 µs
        let bandwidth = MetricDerivation.metrics(
            for: "cpu.mem-bw", samples: [.init(operations: 1, cycles: 1_000_000_000, bytes: 1 << 30)], tscHertz: 1e9)[0]
        #expect(bandwidth.values == [1])  // 1 GiB in 1 s
    }
}

/// A fixed host, so these tests read nothing from the machine they run on.
func testEnvironment(guestImageHash: String?) -> EnvironmentRecord {
    EnvironmentRecord(
        hostname: "testhost", cpuModel: "Test CPU @ 2.00GHz", cpuVendor: "GenuineTest", cpuFlags: ["hypervisor"],
        logicalCPUs: 2, memoryMiB: 24576, kernel: "6.1.0-test", operatingSystem: "Debian GNU/Linux 12", runningInVM: true,
        kvm: .init(
            module: "kvm_pvm", devicePresent: true, usable: true, unavailableReason: nil, hardwareVirtualization: false,
            softwareAssisted: true, nestedParameter: nil, tscKHz: 2_000_000),
        tscKHz: 2_000_000, numaAvailable: true, numaNodes: [.init(id: 0, memoryMiB: 24576, cpus: [0, 1])],
        numaNodeUsed: nil, qemuVersion: nil, guestImageHash: guestImageHash)
}

func sampleRun() -> RunResults {
    let environment = testEnvironment(guestImageHash: "fnv1a64:0123")
    func result(_ system: String, _ values: [Double]) -> BenchmarkResult {
        BenchmarkResult(
            system: system, benchmark: "cpu.cpuid", privilege: "cpl3", engine: "kvm", status: .ok, iterations: 10,
            repetitions: values.count,
            metrics: [
                Metric(MetricSamples(name: "ns_per_op", unit: "ns", better: .lower, values: values)),
                Metric(MetricSamples(name: "cycles_per_op", unit: "cycles", better: .lower, values: values.map { $0 * 2.6 })),
            ])
    }
    return RunResults(
        tool: ToolInfo(version: "test", gitCommit: nil), startedAt: Date(timeIntervalSince1970: 0), suite: "quick",
        environment: environment,
        results: [
            result("native", [100, 101, 99]), result("hardware-assist", [400, 410, 390]),
            BenchmarkResult(
                system: "hardware-assist", benchmark: "cpu.syscall", status: .skipped, reason: "syscall-did-not-enter-cpl0"),
        ])
}

@Suite struct ResultsFileTests {
    @Test func roundTripsAndComputesPercentOfNative() throws {
        let run = sampleRun()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try RunOutput.write(run, to: directory)
        let loaded = try RunResults.load(from: directory.appendingPathComponent("results.json"))
        #expect(loaded.schemaVersion == RunResults.currentSchemaVersion)
        #expect(loaded.results.count == 3)
        #expect(loaded.results[1].metrics[0].samples == [400, 410, 390])
        let percent = try #require(
            loaded.percentOfNative(system: "hardware-assist", benchmark: "cpu.cpuid", metric: loaded.results[1].metrics[0]))
        #expect(abs(percent - 25) < 0.01)  // 4x slower than native
    }

    /// Replays the finding: a non-finite value was written as "inf" and the reader rejected it.
    @Test func everyFileHvbenchWritesItReadsBack() throws {
        var run = sampleRun()
        run.derived = [
            DerivedFigure(
                kind: .speedup, benchmark: "cpu.cpuid", metric: "ns_per_op", numerator: "a", denominator: "b", value: .infinity,
                ci95Low: -.infinity, ci95High: .nan)
        ]
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("results.json")
        try writeAtomically(try run.encoded(), to: file)
        let loaded = try RunResults.load(from: file)
        #expect(loaded.derived?.first?.value == .infinity)
        #expect(loaded.derived?.first?.ci95High.isNaN == true)
    }

    @Test func outOfRangeValuesAreErrorsNamingTheField() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("results.json")
        func problem(_ change: (inout RunResults) -> Void) -> String {
            var run = sampleRun()
            change(&run)
            do {
                try writeAtomically(try run.encoded(), to: file)
                _ = try RunResults.load(from: file)
                return ""
            } catch { return "\(error)" }
        }
        #expect(
            problem { $0.results[0].metrics[0].samples = [] }.contains(
                "results[0] (native cpu.cpuid).metrics[0] (ns_per_op) of an ok result has no samples"))
        #expect(problem { $0.results[1].metrics[1].samples = [1, .infinity] }.contains("non-finite sample"))
        #expect(problem { $0.results[0].repetitions = -1 }.contains("results[0] (native cpu.cpuid).repetitions -1"))
        #expect(problem { $0.results[0].wallSeconds = -.infinity }.contains("wallSeconds"))
        // The optional counters are checked too, not only the ones every result has.
        for counter in [\ExitCounters.interrupts, \.interruptsByEventFD, \.ioThreadNotifications] {
            #expect(
                problem {
                    var exits = ExitCounters()
                    exits[keyPath: counter] = -3
                    $0.results[0].exits = exits
                }.contains("results[0] (native cpu.cpuid).exits holds a negative count"))
        }
        for perVCPU in [[VCPUExitCounters(halts: -1)], [VCPUExitCounters(interrupts: -2)], []] {
            #expect(
                problem {
                    var exits = ExitCounters()
                    exits.perVCPU = perVCPU
                    $0.results[0].exits = exits
                }.contains("results[0] (native cpu.cpuid).exits.perVCPU"))
        }
        #expect(problem { $0.results[0].vcpus = 0 }.contains("results[0] (native cpu.cpuid).vcpus 0 is out of range"))
        #expect(problem { $0.results[0].netBackend = "wire" }.contains("results[0] (native cpu.cpuid).netBackend \"wire\""))
        #expect(problem { $0.environment.pinnedCPUs = [PinnedCPU(cpu: -1, node: 0)] }.contains("environment.pinnedCPUs"))
        #expect(problem { _ in }.isEmpty)
    }

    /// Boots of one result add up per vCPU; boots with different vCPU counts have no per-vCPU sum.
    @Test func perVCPUCountersAddUpAcrossBoots() {
        var first = ExitCounters()
        first.perVCPU = [VCPUExitCounters(portIO: 2, interrupts: 60), VCPUExitCounters(interrupts: 61)]
        first.operations = 60
        var total = first
        total.add(first)
        #expect(total.perVCPU == [VCPUExitCounters(portIO: 4, interrupts: 120), VCPUExitCounters(interrupts: 122)])
        #expect(total.perVCPURates?.map(\.interrupts) == [1, 122.0 / 120])
        var single = ExitCounters()
        single.perVCPU = [VCPUExitCounters()]
        total.add(single)
        #expect(total.perVCPU == nil)
    }

    @Test func injectedSlowdownIsRecordedAndWarnedAboutInEveryReport() throws {
        var run = sampleRun()
        run.injectedSlowdownPercent = 25
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try RunOutput.write(run, to: directory)
        #expect(try RunResults.load(path: directory.path).injectedSlowdownPercent == 25)
        for file in ["summary.md", "report.html"] {
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            #expect(text.contains("--inject-slowdown 25"), "\(file)")
        }
        #expect(TableReport.render(run).hasPrefix("WARNING: This run was slowed down on purpose"))
        let csv = try String(contentsOf: directory.appendingPathComponent("results.csv"), encoding: .utf8)
        #expect(csv.split(separator: "\n")[0].hasSuffix("injected_slowdown_percent"))
        #expect(csv.split(separator: "\n")[1].hasSuffix(",25"))
        #expect(sampleRun().slowdownWarning == nil)
    }

    @Test func rejectsFutureVersionsAndCorruptFiles() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("results.json")
        var json = String(decoding: try sampleRun().encoded(), as: UTF8.self)
        json = json.replacingOccurrences(of: "\"schemaVersion\" : 2", with: "\"schemaVersion\" : 3")
        try writeAtomically(Data(json.utf8), to: file)
        #expect(throws: RunResults.ReadError.self) { try RunResults.load(from: file) }
        do { _ = try RunResults.load(from: file) } catch { #expect("\(error)".contains("schemaVersion 3 is not supported")) }
        try writeAtomically(Data("{\"schemaVersion\": 1, \"results\": [".utf8), to: file)
        #expect(throws: RunResults.ReadError.self) { try RunResults.load(from: file) }
        try writeAtomically(Data("{\"schemaVersion\": 1}".utf8), to: file)
        do { _ = try RunResults.load(from: file) } catch { #expect("\(error)".contains("missing field")) }
    }

    @Test func csvHasOneRowPerSystemBenchmarkMetric() throws {
        let data = try CSVReport.render(sampleRun())
        let reader = try CSVReader(string: String(decoding: data, as: UTF8.self), hasHeaderRow: true)
        #expect(reader.headerRow == CSVReport.header)
        var rows: [[String]] = []
        while let row = reader.next() { rows.append(row) }
        #expect(rows.count == 5)  // 2 metrics x 2 systems + 1 skipped result
        let column = { (name: String) in CSVReport.header.firstIndex(of: name)! }
        #expect(rows.allSatisfy { $0.count == CSVReport.header.count })
        #expect(rows[2][column("system")] == "hardware-assist" && rows[2][column("metric")] == "ns_per_op")
        #expect(rows[2][column("percent_of_native")] == "25")
        #expect(rows[4][column("status")] == "skipped" && rows[4][column("reason")] == "syscall-did-not-enter-cpl0")
    }

    @Test func tableShowsMediansAndPercentOfNative() {
        let table = TableReport.render(sampleRun())
        #expect(table.contains("hardware-assist  cpu.cpuid"))
        #expect(table.contains("25.0%"))
        #expect(table.contains("skipped: syscall-did-not-enter-cpl0"))
    }
}
