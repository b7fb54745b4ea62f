import Foundation
import Testing

@testable import Bench
import Machine
import Results

/// The hvbench executable itself: the run contract and its clear errors.
@Suite struct CommandLineTests {
    static let executable: String? = {
        guard let root = try? Workspace.locate().root else { return nil }
        for configuration in ["debug", "release"] {
            let candidate = root.appendingPathComponent(".build/\(configuration)/hvbench").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    func hvbench(_ arguments: [String], timeout: Double = 900) async throws -> ProcessRunner.Output {
        let executable = try #require(Self.executable, "the hvbench executable must be built next to the tests")
        return try await ProcessRunner.run(executable, arguments, timeout: timeout)
    }

    @Test func unknownModeBenchmarkAndSuiteAreClearErrors() async throws {
        let mode = try await hvbench(["run", "--mode", "warp"])
        #expect(mode.exitCode == 2)
        #expect(mode.standardError.contains("'warp' is invalid for '--mode"), "\(mode.standardError)")
        let bench = try await hvbench(["run", "--bench", "cpu.nope"])
        #expect(bench.exitCode == 2)
        #expect(bench.standardError.contains("unknown benchmark 'cpu.nope'"))
        let suite = try await hvbench(["run", "--suite", "nope"])
        #expect(suite.exitCode == 2)
        #expect(suite.standardError.contains("unknown suite 'nope'"))
        let numa = try await hvbench(["run", "--mode", "native", "--bench", "cpu.int", "--numa-node", "99"])
        #expect(numa.exitCode == 2)
        #expect(numa.standardError.contains("NUMA node 99"))
    }

    @Test func malformedSuiteFileNamesFileAndLine() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("broken.yaml")
        try "name: broken\nbenchmarks:\n  - id: cpu.int\n   iterations: 3\n".write(to: file, atomically: true, encoding: .utf8)
        let output = try await hvbench(["run", "--mode", "native", "--suite", file.path])
        #expect(output.exitCode == 2)
        #expect(output.standardError.contains("broken.yaml:"), "\(output.standardError)")
    }

    @Test func runWritesResultsInBothModes() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let output = try await hvbench([
            "run", "--mode", "all", "--bench", "cpu.int", "--bench", "cpu.cpuid", "--bench", "vm.boot", "--iterations", "20",
            "--repetitions", "2", "--out", directory.path,
        ])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let run = try RunResults.load(from: directory.appendingPathComponent("results.json"))
        let systems = Set(run.results.map(\.system))
        #expect(systems.contains("native"))
        if Host.hasKVM {
            #expect(systems.contains("hardware-assist"))
            #expect(run.results.first { $0.system == "hardware-assist" && $0.benchmark == "cpu.int" }?.status == .ok)
        } else {
            #expect(run.results.first { $0.system == "hardware-assist" }?.status == .skipped)
        }
        // The emulator needs no /dev/kvm: full-emulation runs everywhere.
        let emulated = run.results.first { $0.system == "full-emulation" && $0.benchmark == "cpu.int" }
        #expect(
            emulated?.status == .ok && emulated?.engine == "emulator-translate",
            "\(emulated?.reason ?? "no full-emulation result")")
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("results.csv").path))
        #expect(output.standardOutput.contains { $0.contains("% native") })
    }

    /// `--pin`: the native process runs under numactl on that CPU, and the results say where
    /// everything was pinned, with the CPU's NUMA node.
    @Test(.enabled(if: ProcessRunner.find("numactl") != nil, "needs numactl (scripts/setup installs it)"))
    func pinningIsAppliedAndRecorded() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let cpu = NUMAPlacement.configuredCPUs - 1
        let output = try await hvbench([
            "run", "--mode", "native,full-emulation", "--bench", "cpu.int", "--iterations", "20", "--repetitions", "2",
            "--pin", "\(cpu)", "--out", directory.path,
        ])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let run = try RunResults.load(from: directory.appendingPathComponent("results.json"))
        #expect(run.environment.pinnedCPUs == [PinnedCPU(cpu: cpu, node: NUMAPlacement.node(ofCPU: cpu))])
        #expect(run.results.allSatisfy { $0.status == .ok }, "\(run.results.map { $0.reason ?? "" })")
        let log = try String(contentsOf: directory.appendingPathComponent("logs/native/cpu.int.log"), encoding: .utf8)
        #expect(log.contains("--physcpubind=\(cpu) "))
    }

    /// `--bench` alone runs the catalogue's defaults as suite "bench" (one round); with a
    /// suite, the suite's entry and rounds. Nothing is borrowed from a suite quietly.
    @Test func benchWithoutASuiteTakesTheCatalogueDefaults() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let alone = directory.appendingPathComponent("alone")
        let output = try await hvbench([
            "run", "--mode", "native", "--bench", "cpu.cpuid", "--repetitions", "2", "--out", alone.path,
        ])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let run = try RunResults.load(from: alone.appendingPathComponent("results.json"))
        #expect(run.suite == "bench")
        #expect(run.schedule?.rounds == 1)
        #expect(run.results.first?.iterations == BenchmarkDefinition.named("cpu.cpuid")?.defaultIterations)
        #expect(run.results.first?.warmups == 1)
        let inQuick = directory.appendingPathComponent("quick")
        let quick = try await hvbench([
            "run", "--suite", "quick", "--mode", "native", "--bench", "cpu.cpuid", "--repetitions", "2", "--out", inQuick.path,
        ])
        #expect(quick.exitCode == 0, "\(quick.standardError)")
        let quickRun = try RunResults.load(from: inQuick.appendingPathComponent("results.json"))
        let suite = try Suite.load(named: "quick", in: try Workspace.locate())
        #expect(quickRun.suite == "quick" && quickRun.schedule?.rounds == suite.rounds)
        #expect(quickRun.results.first?.iterations == suite.entries.first { $0.id == "cpu.cpuid" }?.iterations)
    }

    @Test func emulatorAxesAndSelftestFromTheCommandLine() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let run = try await hvbench([
            "run", "--cpu", "emulator", "--io", "virtio", "--bench", "cpu.pio", "--iterations", "20", "--repetitions", "2",
            "--out", directory.path,
        ])
        #expect(run.exitCode == 0, "\(run.standardError)")
        let results = try RunResults.load(from: directory.appendingPathComponent("results.json"))
        #expect(results.results.map(\.system) == ["emulator-virtio"])
        let badEngine = try await hvbench(["run", "--cpu", "bochs"])
        #expect(badEngine.exitCode == 2)
        #expect(badEngine.standardError.contains("'bochs' is invalid for '--cpu"), "\(badEngine.standardError)")
        let corpus = try Workspace.locate().root.appendingPathComponent("Workloads/emulator/differential-corpus.txt").path
        let selftest = try await hvbench(["selftest", "emulator", "--corpus", corpus])
        #expect(selftest.exitCode == 0, "\(selftest.standardOutput.joined(separator: "\n"))")
        #expect(selftest.standardOutput.contains("no mismatches"))
    }

    @Test func envReportsTheKVMModuleThatIsLoaded() async throws {
        let output = try await hvbench(["env", "--json"])
        #expect(output.exitCode == 0)
        let record = try JSONDecoder().decode(
            EnvironmentRecord.self, from: Data(output.standardOutput.joined(separator: "\n").utf8))
        let loaded =
            ["kvm_pvm", "kvm_intel", "kvm_amd"].first { FileManager.default.fileExists(atPath: "/sys/module/\($0)") } ?? "none"
        #expect(record.kvm.module == loaded)
        if loaded == "kvm_pvm" { #expect(record.kvm.softwareAssisted) }
        #expect(record.tscKHz > 100_000)
    }
}
