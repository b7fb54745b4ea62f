import Foundation
import Testing

@testable import Bench
import Results

/// The balloon benchmarks on real guests: the benchmark guest's virtio-balloon driver against
/// hvbench's device under the emulator and KVM (the host's own count of resident guest RAM
/// must fall by the inflated pages and rise by the refaulted ones) and against QEMU's device.
@Suite(.serialized) struct BalloonBenchmarkTests {
    static let pages: UInt64 = 256  // 1 MiB a repetition
    static let mebibytes = Double(pages) * 4096 / 1_048_576

    func run(_ id: String, on systems: [SystemDefinition]) async throws -> [BenchmarkResult] {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let plan = RunPlan(systems: systems, suite: tinySuite(id, iterations: Self.pages), outputDirectory: output)
        let results = await BenchmarkRunner(artifacts: artifacts) { _ in }.run(plan).results
        try #require(results.count == systems.count)
        return results
    }

    /// What the host counted at the probes around each timed part, per repetition.
    func residency(_ result: BenchmarkResult) throws -> [(before: Double, after: Double)] {
        let before = try #require(result.metrics.first { $0.name == "resident_before" }, "\(result.metrics.map(\.name))")
        let after = try #require(result.metrics.first { $0.name == "resident_after" })
        #expect(before.samples.count == 2 && after.samples.count == 2)
        return Array(zip(before.samples, after.samples))
    }

    func checkHostMemory(_ result: BenchmarkResult, _ id: String) throws {
        #expect(result.status == .ok, "\(id) on \(result.system): \(result.reason ?? "")")
        for (before, after) in try residency(result) {
            switch id {
            case "mem.balloon-inflate":
                // The inflated pages were resident (the guest wrote to each) and now are not.
                #expect(before - after >= 0.9 * Self.mebibytes, "before \(before) MiB, after \(after) MiB")
            case "mem.balloon-deflate":
                // Deflating only tells the device: nothing comes back until the guest touches it.
                #expect(abs(after - before) < 0.1 * Self.mebibytes, "before \(before) MiB, after \(after) MiB")
            default:
                // Each refaulted page is a fresh host page.
                #expect(after - before >= 0.9 * Self.mebibytes, "before \(before) MiB, after \(after) MiB")
            }
        }
        if id != "mem.balloon-refault" {
            let bandwidth = try #require(result.metrics.first { $0.name == "bandwidth" })
            #expect(bandwidth.unit == "MiB/s" && bandwidth.summary.median > 0)
        }
    }

    @Test(arguments: ["mem.balloon-inflate", "mem.balloon-deflate", "mem.balloon-refault"])
    func underTheEmulatorTheHostGetsThePagesBack(_ id: String) async throws {
        let results = try await run(id, on: [.fullEmulation, .emulatorVirtio])
        for result in results { try checkHostMemory(result, id) }
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage), arguments: ["mem.balloon-inflate", "mem.balloon-refault"])
    func underKVMTheHostGetsThePagesBack(_ id: String) async throws {
        let results = try await run(id, on: [.hardwareAssist, .paravirtIO])
        for result in results { try checkHostMemory(result, id) }
    }

    /// The host drives: it asks for the guest's spare pages and gets them, and the memory it
    /// holds for the guest falls by them; QEMU's device, driven through QMP, gives its process's
    /// resident memory back the same way.
    @Test func theHostAsksForPagesAndItsMemoryFalls() async throws {
        let systems: [SystemDefinition] =
            [.fullEmulation] + (Host.hasKVM ? [.hardwareAssist] : []) + (Host.qemu != nil ? [.qemuTCG] : [])
        let results = try await run("mem.balloon-reclaim", on: systems)
        for result in results {
            #expect(result.status == .ok, "\(result.system): \(result.reason ?? "")")
            let metric = { (name: String) in result.metrics.first { $0.name == name }?.samples ?? [] }
            #expect(metric("reclaim_time").count == 2 && metric("return_time").allSatisfy { $0 > 0 })
            let resident = result.system == "qemu-tcg" ? "process_rss" : "resident"
            for (before, after) in zip(metric("\(resident)_before"), metric("\(resident)_after")) {
                // QEMU's whole process also allocates for itself meanwhile: half is the floor there.
                #expect(
                    before - after >= (result.system == "qemu-tcg" ? 0.5 : 0.9) * Self.mebibytes,
                    "\(result.system): \(before) -> \(after) MiB")
            }
            #expect(!metric("\(resident)_before").isEmpty, "\(result.metrics.map(\.name))")
        }
    }

    /// Linux's own virtio_balloon against hvbench's device: it gives the pages the host asks
    /// for out of its free memory (/init wrote and freed twice as many first, so they are
    /// resident), and the host's memory for the guest falls.
    @Test(.linuxGuestAvailable)
    func linuxsDriverGivesThePagesTheHostAsksFor() async throws {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let suite = tinySuite("linux.balloon-reclaim", iterations: Self.pages, repetitions: 1)
        let results = await BenchmarkRunner(artifacts: artifacts) { _ in }.run(
            RunPlan(systems: [.fullEmulation], suite: suite, outputDirectory: output)
        ).results
        let result = try #require(results.first)
        #expect(result.status == .ok, "\(result.reason ?? "")")
        #expect(result.privilege == "cpl0", "Linux's driver runs in its kernel")
        let before = try #require(result.metrics.first { $0.name == "resident_before" }?.samples.first)
        let after = try #require(result.metrics.first { $0.name == "resident_after" }?.samples.first)
        #expect(before - after >= 0.5 * Self.mebibytes, "\(before) -> \(after) MiB")
    }

    /// The same driver against QEMU's virtio-balloon-pci (QEMU ignores the probe port, so it has
    /// no residency figures); natively there is no balloon and the benchmark says so.
    @Test(.enabled(if: Host.qemu != nil, Host.qemuSkipMessage))
    func qemusBalloonTakesTheSameDriverAndNativeSkips() async throws {
        let results = try await run("mem.balloon-inflate", on: [.qemuTCG, .native])
        #expect(results[0].status == .ok, "\(results[0].reason ?? "")")
        #expect(results[0].metrics.map(\.name) == ["bandwidth", "ns_per_op"])
        #expect(results[1].status == .skipped && results[1].reason?.contains("no-balloon-natively") == true)
    }
}

/// mem.page-sharing on real guests: two VMs with the same content in 1 MiB each, their RAM
/// offered to KSM; what merges is the host's count, and each guest's writes afterwards find
/// every page intact. The host's KSM settings are the same afterwards.
@Suite(.serialized) struct PageSharingTests {
    static let ksmProblem: String? = {
        guard getuid() == 0 else { return "changing the host's KSM settings needs root" }
        guard FileManager.default.isWritableFile(atPath: "\(KernelSamePageMerging.directory)/run") else {
            return "\(KernelSamePageMerging.directory)/run is missing or read-only (a kernel without KSM)"
        }
        return nil
    }()

    func knobs() -> [String] {
        ["run", "pages_to_scan", "sleep_millisecs"].map {
            (try? String(contentsOfFile: "\(KernelSamePageMerging.directory)/\($0)", encoding: .utf8)) ?? "?"
        }
    }

    @Test(.enabled(if: ksmProblem == nil, "\(ksmProblem ?? "")"))
    func twoVMsShareTheirPagesAndEachBreaksThemIntact() async throws {
        let before = knobs()
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        // QEMU with KVM too: its RAM is mergeable as ours is (it has no copy-on-write breaks).
        let qemu: [SystemDefinition] = Host.hasKVM && Host.qemu != nil ? [.qemuKVM] : []
        var plan = RunPlan(
            systems: [.fullEmulation] + (Host.hasKVM ? [.hardwareAssist] : []) + qemu,
            suite: tinySuite("mem.page-sharing", iterations: 256), outputDirectory: output)
        plan.vm.sharingVMs = 2
        let results = await BenchmarkRunner(artifacts: artifacts) { _ in }.run(plan).results
        for result in results {
            #expect(result.status == .ok, "\(result.system): \(result.reason ?? "")")
            let metric = { (name: String) in result.metrics.first { $0.name == name }?.samples ?? [] }
            // Two VMs of 256 identical pages: at least one VM's copy is saved.
            #expect(try #require(metric("saved").first) >= 0.9, "\(result.metrics.map { ($0.name, $0.samples) })")
            #expect(metric("saved_share").first ?? 0 >= 90)
            if result.system == "qemu-kvm" {
                #expect(metric("cow_break").isEmpty)
            } else {
                #expect(metric("cow_break").count == 2 && metric("cow_break").allSatisfy { $0 > 0 })
            }
        }
        #expect(knobs() == before, "the host's KSM settings are put back")
    }
}

/// mem.overcommit on real VMs, each an `hvbench boot` process in a memory cgroup that holds the
/// three only if each balloons half its pool: without ballooning the kernel's OOM killer ends at
/// least one; with it all three run and the cgroup never reached its limit.
@Suite(.serialized) struct OvercommitTests {
    static let problem: String? = {
        guard geteuid() == 0 else { return "making a memory cgroup needs root" }
        guard FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/memory.limit_in_bytes") else {
            return "no cgroup v1 memory controller at /sys/fs/cgroup/memory"
        }
        return CommandLineTests.executable == nil ? "the hvbench executable must be built next to the tests" : nil
    }()

    /// The FIFO's lines are range-checked: only `pages N` with N a 32-bit count is a request.
    @Test func balloonFIFORequestsAndReportsAreParsedStrictly() {
        #expect(BalloonFIFO.target(in: "pages 4096") == 4096)
        for bad in ["junk", "pages", "pages -1", "pages 4294967296", "pages 12 34", "Pages 1", "pages 0x10"] {
            #expect(BalloonFIFO.target(in: bad) == nil, "\(bad)")
        }
        let output = "HVB1 hello\nhvbench-boot: balloon actual=0 taken=0\nhvbench-boot: balloon actual=512 taken=512\n"
        #expect(BalloonFIFO.latestStatus(in: output)?.actual == 512)
        #expect(BalloonFIFO.latestStatus(in: "hvbench-boot: balloon actual=x taken=1\n") == nil)
    }

    @Test(.enabled(if: problem == nil, "\(problem ?? "")"))
    func ballooningKeepsEveryVMWithinTheCgroup() async throws {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        var plan = RunPlan(
            systems: [.fullEmulation], suite: tinySuite("mem.overcommit", iterations: 4096, repetitions: 1),
            outputDirectory: output)
        plan.vmExecutable = CommandLineTests.executable
        let result = try #require(await BenchmarkRunner(artifacts: artifacts) { _ in }.run(plan).results.first)
        #expect(result.status == .ok, "\(result.reason ?? "")")
        let metric = { (name: String) in result.metrics.first { $0.name == name }?.samples.first ?? -1 }
        #expect(metric("vms_alive") == 3)
        #expect(metric("vms_alive_unballooned") >= 0 && metric("vms_alive_unballooned") < 3, "the OOM killer ended one")
        #expect(metric("peak") > 0 && metric("peak") <= metric("limit"))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup/memory").filter {
            $0.hasPrefix("hvbench-overcommit-\(getpid())")
        }
        #expect(leftovers.isEmpty, "the cgroups are removed")
    }
}
