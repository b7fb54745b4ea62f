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

    static let diskJobs = ["linux.fio-randread", "linux.fio-randwrite", "linux.fio-seqread"]
    static let operatingSystemJobs = [
        "linux.null-syscall", "linux.pipe-ctxsw", "linux.page-fault", "linux.fork-exit", "linux.mmap-munmap", "linux.compress",
    ]
    static let networkJobs = ["linux.iperf3-tx", "linux.iperf3-rx", "linux.udp-rr"]

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
        .enabled("Debian's packages, fio or iperf3 are not available here (scripts/setup --with-linux)") {
            await LinuxWorkloadTests.available()
        })
    func everyWorkloadRunsNativelyWithTheGuestsBinaries() async throws {
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let benchmarks = Self.diskJobs + Self.operatingSystemJobs + Self.networkJobs
        let run = try await CommandLineTests().hvbench(
            ["run", "--mode", "native", "--rounds", "1", "--repetitions", "2", "--iterations", "4", "--out", output.path]
                + benchmarks.flatMap { ["--bench", $0] }, timeout: 600)
        #expect(run.exitCode == 0, "\(run.statusDescription): \(run.standardError.suffix(600))")
        let results = try Self.results(output)
        #expect(results.map(\.benchmark).sorted() == benchmarks.sorted())
        for result in results {
            Self.expectMeasured(result, samples: 2)
            #expect(result.engine == "host" && result.privilege == "host-user")
        }
        // The native job ran the guest's tools: busybox's shell from the image's tools folder.
        let log = try String(contentsOf: output.appendingPathComponent("logs/native/linux.null-syscall.log"), encoding: .utf8)
        #expect(log.contains("unshare") && log.contains("--pid") && log.contains("/tools/busybox sh"), "\(log.prefix(600))")
    }

    /// One emulator boot with an IDE disk runs every disk and operating-system job (hvb-job
    /// takes a list): fio's direct I/O through ata_piix on hvbench's IDE model, the randwrite
    /// checked by fio; the UDP job, given no network, fails with the guest's reason.
    @Test(
        .enabled("Debian's packages, fio or iperf3 are not available here (scripts/setup --with-linux)") {
            await LinuxWorkloadTests.available()
        })
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

    /// A network job through the runner in the emulator over the run's TAP: Linux's virtio_net
    /// to the host kernel's UDP echo, with the exits counted between /init's milestones (one
    /// boot: the iperf3 jobs are tried natively above); on the e1000 systems the cloud kernel's
    /// missing driver is a skip with that reason.
    @Test(
        .enabled(if: Host.canMakeNamespaces, Host.namespaceSkipMessage),
        .enabled("Debian's packages, fio or iperf3 are not available here (scripts/setup --with-linux)") {
            await LinuxWorkloadTests.available()
        })
    func networkJobsRunOverTheTAPInTheEmulator() async throws {
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let run = try await CommandLineTests().hvbench(
            [
                "run", "--mode", "emulator-virtio,full-emulation", "--bench", "linux.udp-rr",
                "--rounds", "1", "--repetitions", "1", "--iterations", "8", "--memory", "1024", "--out", output.path,
            ], timeout: 900)
        #expect(run.exitCode == 0, "\(run.statusDescription): \(run.standardError.suffix(600))")
        let results = try Self.results(output)
        for result in results where result.system == "emulator-virtio" {
            Self.expectMeasured(result, samples: 1)
            let exits = try #require(result.exits, "exits between milestones 5 and 6")
            #expect(exits.notifications > 0 && exits.operations > 0, "\(exits)")
        }
        let image = try await Self.image.value.get()
        for result in results where result.system == "full-emulation" && !image.drivers.contains("e1000") {
            #expect(result.status == .skipped && result.reason?.contains("e1000") == true, "\(result.reason ?? "")")
        }
        #expect(results.count == 2)
    }
}
