import Foundation
import Testing

@testable import Bench
import Machine
import Results

/// The Linux workloads (fio, iperf3, hvb-ops through hvb-job) with tiny sizes: natively in
/// namespaces of their own, in one emulator boot for the disk and operating-system jobs, and
/// over the TAP in the emulator for the network jobs.
@Suite(.serialized) struct LinuxWorkloadTests {
    static let image = Task { () -> Result<LinuxGuestBuilder.Image, Error> in
        do {
            return .success(try await LinuxGuestBuilder(workspace: try Workspace.locate(), withWorkloads: true).build())
        } catch { return .failure(error) }
    }

    /// The workload programs must be there too: without fio or iperf3 the jobs are skipped.
    static func available() async -> Bool {
        guard case .success(let image) = await image.value else { return false }
        return image.programs.contains("fio") && image.programs.contains("iperf3")
    }

    /// The Linux guest's jobs, from the catalogue (linux.boot is timed from outside, and
    /// linux.balloon-reclaim driven by the host: BalloonBenchmarkTests).
    static let jobs = BenchmarkDefinition.all.filter { $0.guest == .linux && $0.timing == .inGuest && $0.group != .memory }
    static let diskJobs = jobs.filter(\.needsDisk).map(\.id)
    static let networkJobs = jobs.filter(\.needsNIC).map(\.id)
    static let operatingSystemJobs = jobs.filter { !$0.needsDisk && !$0.needsNIC }.map(\.id)

    static func results(_ output: URL) throws -> [BenchmarkResult] {
        try RunResults.load(from: output.appendingPathComponent("results.json")).results
    }

    /// Each measured sample is there, positive and finite.
    static func expectMeasured(_ result: BenchmarkResult, samples: Int) {
        #expect(result.status == .ok, "\(result.system) \(result.benchmark): \(result.reason ?? "")")
        for metric in result.metrics {
            #expect(
                metric.samples.count == samples && metric.samples.allSatisfy { $0 > 0 && $0.isFinite },
                "\(result.benchmark) \(metric.name): \(metric.samples)")
        }
    }

    @Test(
        .enabled(if: Host.canMakeNamespaces, Host.namespaceSkipMessage),
        .linuxWorkloadsAvailable)
    func everyWorkloadRunsNativelyWithTheGuestsBinaries() async throws {
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let benchmarks = Self.diskJobs + Self.operatingSystemJobs + Self.networkJobs
        // Tiny sizes, but iperf3 moves at least a 128 KiB block, and its server counts what it
        // received when the client says it is done: a transfer much shorter than that can be
        // counted before anything arrived.
        let suite = output.appendingPathComponent("tiny-linux.yaml")
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        let entries = benchmarks.map { "  - id: \($0)\n    iterations: \($0.hasPrefix("linux.iperf3") ? 2048 : 4)\n" }
        try Data(("name: tiny-linux\nrepetitions: 2\nwarmups: 1\ntimeout: 120\nbenchmarks:\n" + entries.joined()).utf8)
            .write(to: suite)
        let run = try await CommandLineTests().hvbench(
            [
                "run", "--suite", suite.path, "--mode", "native", "--rounds", "1", "--out",
                output.appendingPathComponent("run").path,
            ],
            timeout: 600)
        #expect(run.exitCode == 0, "\(run.statusDescription): \(run.standardError.suffix(600))")
        let results = try Self.results(output.appendingPathComponent("run"))
        #expect(results.map(\.benchmark).sorted() == benchmarks.sorted())
        for result in results {
            Self.expectMeasured(result, samples: 2)
            #expect(result.engine == "host" && result.privilege == "host-user")
        }
        // The native job ran the guest's tools: busybox's shell from the image's tools folder.
        let log = try String(
            contentsOf: output.appendingPathComponent("run/logs/native/linux.null-syscall.log"), encoding: .utf8)
        #expect(log.contains("unshare") && log.contains("--pid") && log.contains("/tools/busybox sh"), "\(log.prefix(600))")
    }

    /// A job whose device is missing (its driver did not probe, or the system has none) fails
    /// at once with the kernel's last words on the matching drivers, and the job list still
    /// ends with its done line: a missing device never hangs the guest.
    @Test(
        .linuxWorkloadsAvailable)
    func aMissingDeviceFailsTheJobWithTheDriversWords() async throws {
        let tools = try #require(try await Self.image.value.get().tools)
        let output = try await ProcessRunner.run(
            "/usr/bin/env",
            [
                "-i", "PATH=\(tools.applets.path):/usr/bin:/bin", "bench=linux.fio-randread,linux.iperf3-tx,linux.udp-rr",
                "disk=/nonexistent/hvbench-disk", tools.busybox.path, "sh", tools.job.path,
            ], timeout: 60)
        let lines = output.standardOutput.compactMap { try? ResultLine.parse($0) }
        #expect(lines.count == 4 && lines.last == .done, "\(output.standardOutput)")
        for line in lines.dropLast() {
            guard case .fail(_, let reason) = line else {
                Issue.record("expected a failure, got \(line)")
                continue
            }
            #expect(reason.hasPrefix("no-disk:") || reason.hasPrefix("no-network:"), "\(reason)")
        }
        #expect(!FileManager.default.fileExists(atPath: "/nonexistent/hvbench-disk"), "fio must not create it")
    }

    /// One emulator boot with the legacy devices runs every disk and operating-system job
    /// (hvb-job takes a list): fio's direct I/O through ata_piix on hvbench's IDE model, the
    /// randwrite checked by fio; Linux's e1000 driver finds its NIC; the UDP job, given no peer
    /// address, fails with the guest's reason.
    @Test(
        .linuxWorkloadsAvailable)
    func diskAndOperatingSystemJobsRunInTheEmulator() async throws {
        let disk = temporaryDirectory().appendingPathExtension("img")
        defer { try? FileManager.default.removeItem(at: disk) }
        FileManager.default.createFile(atPath: disk.path, contents: Data(count: 8 << 20))
        let jobs = Self.diskJobs + Self.operatingSystemJobs + ["linux.udp-rr"]
        let boot = try await CommandLineTests().hvbench(
            [
                "boot", "linux", "--with-workloads", "--cpu", "emulator", "--io", "legacy", "--disk-image", disk.path,
                "--memory", "1024", "--timeout", "600", "--cmdline",
                "console=ttyS0 panic=-1 quiet io_delay=none bench=\(jobs.joined(separator: ",")) iterations=2 repetitions=1 warmups=0 size=4m",
            ], timeout: 700)
        #expect(boot.exitCode == 0, "\(boot.statusDescription): \(boot.standardError.suffix(400))")
        let lines = boot.standardOutput
        #expect(lines.contains { $0.hasPrefix("block devices:") && $0.contains("sda") }, "\(lines.suffix(8))")
        // Linux's e1000 driver probed hvbench's e1000: EEPROM checksum and MAC, PHY found.
        #expect(lines.contains { $0.hasPrefix("network interfaces:") && $0.contains("eth0") }, "\(lines.suffix(8))")
        #expect(!lines.contains { $0.contains("EEPROM Checksum Is Not Valid") || $0.contains("PHY") && $0.contains("rror") })
        for job in jobs {
            // Each job's own lines, and the done line the list ends with.
            let own = lines.filter { $0.contains("bench=\(job) ") || $0.hasSuffix("bench=\(job)") || $0 == "HVB1 done" }
            let transcript = try BenchmarkTranscript.parse(console: own.joined(separator: "\n"), bench: job)
            if job == "linux.udp-rr" {
                guard case .failed(let reason) = transcript.status else {
                    Issue.record("linux.udp-rr without a network must fail: \(own)")
                    continue
                }
                #expect(reason.hasPrefix("no-network:"), "\(reason)")
            } else {
                #expect(transcript.status == .ok && transcript.samples.count == 1, "\(job): \(own)")
                #expect(transcript.privilegeLevel == 3)
            }
        }
    }

    /// A network job through the runner in the emulator over the run's TAP with Linux's e1000
    /// driver on hvbench's e1000 (its EEPROM read through EECD, its PHY through MDIC): it reaches
    /// the host kernel's UDP echo, and the exits counted between /init's milestones show an ICR
    /// read per round trip. (virtio-net under Linux's driver is probed in LinuxGuestTests; a
    /// second boot here for it cost a minute of the test budget.)
    @Test(
        .enabled(if: Host.canMakeNamespaces, Host.namespaceSkipMessage),
        .linuxWorkloadsAvailable)
    func networkJobsRunOverTheTAPWithLinuxsE1000Driver() async throws {
        let image = try await Self.image.value.get()
        try #require(image.drivers.contains("e1000"), "the default kernel has an e1000 driver")
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let run = try await CommandLineTests().hvbench(
            [
                "run", "--mode", "full-emulation", "--bench", "linux.udp-rr", "--rounds", "1",
                "--repetitions", "1", "--warmups", "0", "--iterations", "8", "--memory", "1024", "--out", output.path,
            ], timeout: 900)
        #expect(run.exitCode == 0, "\(run.statusDescription): \(run.standardError.suffix(600))")
        let results = try Self.results(output)
        #expect(results.count == 1)
        let result = try #require(results.first)
        Self.expectMeasured(result, samples: 1)
        let exits = try #require(result.exits, "exits between milestones 5 and 6")
        #expect(exits.operations == 8 && exits.portIO + exits.mmio > 0, "\(exits)")
        #expect((exits.interruptCauseReads ?? 0) >= 8, "an ICR read per received response: \(exits)")
    }
}

extension Trait where Self == ConditionTrait {
    /// The Linux guest with its workload programs can be built here.
    static var linuxWorkloadsAvailable: Self {
        .enabled("Debian's packages, fio or iperf3 are not available here (scripts/setup --with-linux)") {
            await LinuxWorkloadTests.available()
        }
    }
}
