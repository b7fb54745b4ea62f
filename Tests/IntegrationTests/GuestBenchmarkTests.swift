import Foundation
import VMM
import Testing

@testable import Bench
import Results
@testable import KVM
@testable import Machine

/// Every benchmark of hvbench's benchmark guest (linux.boot boots the Linux guest: LinuxGuestTests).
let everyBenchmark = BenchmarkDefinition.all.filter { $0.guest == .benchmarkGuest }.map(\.id)
/// Those one boot measures (mem.page-sharing and mem.overcommit run several VMs:
/// PageSharingTests, OvercommitTests).
let everySingleVMBenchmark = everyBenchmark.filter { $0 != "mem.page-sharing" && $0 != "mem.overcommit" }

/// Benchmarks whose operation the host's KVM may not offer an unmodified guest; the guest then
/// reports a skip with the reason, which the test accepts only for these ids.
let hostDependent: [String: String] = ["cpu.syscall": "syscall-did-not-enter-cpl0"]

/// One boot of a tiny suite: the IPIs an SMP benchmark's handlers take, the wake-up included.
let interProcessorInterruptsPerBoot: [String: Int] = [
    "cpu.ipi": 121, "cpu.ipi-halt": 120, "cpu.tlb-shootdown": 61, "cpu.cacheline-pingpong": 1,
]

@Suite(.serialized) struct GuestBenchmarkTests {
    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage), arguments: everySingleVMBenchmark)
    func everyBenchmarkRunsUnderKVM(_ id: String) async throws {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let runner = BenchmarkRunner(artifacts: artifacts) { _ in }
        // The in-VMM peer: the TAP path runs in NetworkNamespaceTests, one test at a time.
        var configuration = RunPlan(systems: [.hardwareAssist], suite: tinySuite(id), outputDirectory: output)
        configuration.network.backend = .vmm
        let results = await runner.run(configuration).results
        let result = try #require(results.first)
        if BenchmarkDefinition.named(id)?.vmToVM == true {
            // Its second VM exists only on the TAP backend's bridge (NetworkNamespaceTests).
            #expect(result.status == .skipped && result.reason?.contains("--net-backend vmm has no second VM") == true)
            return
        }
        if result.status == .skipped, let expected = hostDependent[id] {
            #expect(result.reason == expected)
            return
        }
        #expect(result.status == .ok, "\(id): \(result.reason ?? "")")
        #expect(result.privilege == "cpl3")
        #expect(result.engine == "kvm")
        #expect(result.vcpus == (interProcessorInterruptsPerBoot[id] == nil ? 1 : 2))
        #expect(!result.metrics.isEmpty)
        for metric in result.metrics {
            #expect(metric.samples.count == 2)
            #expect(metric.samples.allSatisfy { $0 > 0 && $0.isFinite }, "\(id) \(metric.name): \(metric.samples)")
        }
        let exits = try #require(result.exits)
        if id == "cpu.pio" { #expect(exits.unclaimedPortReads >= 40) }
        if id == "cpu.mmio" { #expect(exits.unclaimedMMIOReads >= 40 && exits.mmio >= 40) }
        // One timer interrupt per operation (2 × 20 and a latency pass of 20), as KVM's own
        // irq_injections statistic counts them; the -irq variants take at least one device
        // interrupt per frame or request, as the guest's handlers count them (KVM's statistic
        // agrees within a few), each handler reading ICR, the ATA status or the ISR once;
        // other benchmarks take none.
        if id.contains("-irq") {
            let counted = try #require(result.guestInterrupts).taken
            #expect(4 * abs(try #require(exits.interrupts) - counted) <= max(counted, exits.interrupts ?? 0), "\(id): \(exits)")
            if id.hasSuffix("-moderated") {
                // ITR holds interrupts back: how many arrive depends on how fast frames go, but
                // never more than one per frame (two on kvm_pvm, which delivers each twice).
                #expect(counted > 0 && counted <= 2 * exits.operations, "\(id): \(counted) \(exits)")
            } else {
                #expect(counted >= exits.operations, "\(id): \(counted) \(exits)")
            }
            #expect(exits.interruptCauseReads.map { $0 >= counted } == true, "\(id): \(exits)")
        } else if let perBoot = interProcessorInterruptsPerBoot[id] {
            // The SMP benchmarks run with two vCPUs; per boot (20 + 20 operations and a latency
            // pass of 20), the IPIs the two handlers take (ping and answer for cpu.ipi, one
            // shootdown for cpu.tlb-shootdown) and the one that wakes the idle responder; KVM's
            // statistic may count a re-injected one again (AMD).
            let interrupts = try #require(exits.interrupts)
            #expect((perBoot...perBoot + 3).contains(interrupts), "\(id): \(exits)")
            // Per vCPU: the answering CPU takes the pings, shootdowns and the wake-up; CPU 0
            // takes the answers of cpu.ipi and cpu.ipi-halt, nothing else.
            let perVCPU = try #require(exits.perVCPU)
            #expect(perVCPU.count == 2)
            let answers = id.hasPrefix("cpu.ipi") ? 60 : 0
            #expect((answers...answers + 3).contains(perVCPU[0].interrupts ?? -1), "\(id): \(perVCPU)")
            #expect((perBoot - answers...perBoot - answers + 3).contains(perVCPU[1].interrupts ?? -1), "\(id): \(perVCPU)")
        } else if id == "mem.balloon-reclaim" {
            // The host drove the balloon: a configuration-change interrupt for each of its four
            // requests (2 repetitions, a reclaim and a return each) woke the driver, at least.
            #expect(try #require(exits.interrupts) >= 4, "\(id): \(exits)")
        } else if id.hasPrefix("irq.") || id == "cpu.ipi-self" {
            // 60 timer interrupts; KVM's statistic may count a re-injected one again (AMD).
            #expect((60...63).contains(try #require(exits.interrupts)), "\(id): \(exits)")
        } else {
            #expect(exits.interrupts == 0, "\(id): \(exits)")
        }
        #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent("logs/hardware-assist/\(id).log").path))
    }

    @Test(arguments: everyBenchmark)
    func everyBenchmarkRunsNativelyOrSaysWhyNot(_ id: String) async throws {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let runner = BenchmarkRunner(artifacts: artifacts) { _ in }
        var configuration = RunPlan(systems: [.native], suite: tinySuite(id), outputDirectory: output)
        configuration.network.backend = .vmm  // the in-process peer; the veth path runs in NetworkNamespaceTests
        let result = try #require(await runner.run(configuration).results.first)
        let noNativeEquivalent: Set = [
            "cpu.ptemod", "cpu.pio", "cpu.mmio", "cpu.hypercall", "vm.boot", "cpu.ipi-self", "cpu.ipi", "cpu.ipi-halt",
        ]
        if noNativeEquivalent.contains(id) || id.contains("-irq") || BenchmarkDefinition.named(id)?.vmToVM == true
            || BenchmarkDefinition.named(id)?.group == .memory
        {
            #expect(result.status == .skipped)
            #expect(result.reason?.isEmpty == false)
        } else {
            #expect(result.status == .ok, "\(id): \(result.reason ?? "")")
            #expect(result.privilege == "host-user")
            #expect(result.metrics.allSatisfy { $0.samples.allSatisfy { $0 > 0 } })
        }
    }

    /// `--vcpus 3`: the guest starts both application processors; the first answers, the
    /// second idles in hlt, and a single-CPU benchmark runs as before beside them.
    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage), arguments: ["cpu.ipi", "cpu.int"])
    func benchmarksRunWithThreeVCPUs(_ id: String) async throws {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        var configuration = RunPlan(systems: [.hardwareAssist], suite: tinySuite(id), outputDirectory: output)
        configuration.vm.vcpus = 3
        #expect(configuration.vcpus(for: id) == 3)
        let result = try #require(await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration).results.first)
        #expect(result.status == .ok, "\(id): \(result.reason ?? "")")
        #expect(result.vcpus == 3)
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func aHangingBenchmarkIsStoppedAndTheRunGoesOn() async throws {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        // 50 million port reads take minutes under any KVM; the watchdog allows 2 s.
        var suite = tinySuite("cpu.pio", iterations: 50_000_000, repetitions: 1, timeout: 2)
        suite.entries += tinySuite("cpu.int").entries
        let runner = BenchmarkRunner(artifacts: artifacts) { _ in }
        let results = await runner.run(RunPlan(systems: [.hardwareAssist], suite: suite, outputDirectory: output)).results
        #expect(results.count == 2)
        #expect(results[0].status == .failed)
        #expect(results[0].reason?.contains("watchdog") == true, "\(results[0].reason ?? "")")
        #expect(results[1].status == .ok)
    }

    /// Each distinct MSI message gets one GSI route and irqfd; a guest that keeps inventing
    /// messages fills the bounded table and the rest go through KVM_SIGNAL_MSI, as do writes
    /// outside the local APIC window. (Delivery itself is checked by the `-irq` benchmarks.)
    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func messageRoutesAreBoundedAndReused() throws {
        let engine = try KVMEngine(
            system: try KVMSystem(), memory: try GuestMemory(size: 1 << 20),
            entry: ProtectedModeEntry(entryPoint: 0, ebx: 0, gdtBase: 0, gdtLimit: 0))
        let controller = try engine.connectInterrupts(mmioBus: IOBus())
        let interrupts = try #require(engine.interrupts)
        let capacity = KVMMessageRoutes.capacity
        // A hostile guest's messages get routes like any other: a reserved vector, INIT, an
        // absent APIC. KVM refuses none of them (the local APIC drops what it cannot take).
        let hostile = [
            MSIMessage(address: 0xFEE0_0000, data: 0x02), MSIMessage(address: 0xFEE0_0000, data: 0x0500),
            MSIMessage(address: 0xFEE7_7000, data: 0x40),
        ]
        for message in hostile { controller.signalMessage(message) }
        for vector in 0..<(capacity - hostile.count + 6) {
            controller.signalMessage(MSIMessage(address: 0xFEE0_0000, data: UInt32(0x30 + vector)))
        }
        #expect(interrupts.routes.count == capacity)
        #expect(interrupts.messagesByEventFD == capacity && interrupts.messagesByIoctl == 6)
        controller.signalMessage(MSIMessage(address: 0xFEE0_0000, data: 0x30))  // routed already
        controller.signalMessage(MSIMessage(address: 0x1000, data: 0x31))  // a DMA write, not an interrupt
        #expect(interrupts.messagesByEventFD == capacity + 1 && interrupts.messagesByIoctl == 7)
        #expect(interrupts.failedCalls == 0)
        #expect(engine.interruptsByEventFD == capacity + 1)
        #expect(engine.diagnostics.contains { $0.contains("7 MSI messages went through KVM_SIGNAL_MSI") })
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func bootTimeIsMeasuredFromMilestones() async throws {
        let kvm = try KVMSystem()
        let boot = try VMBuilder.boot(
            VMDescription(kernel: try await Built.guestImage(), commandLine: "bench=vm.boot", memoryMiB: 64, cpu: .kvm(kvm)),
            timeout: 300)
        #expect(boot.outcome.ending == .exitDevice(status: 1))
        #expect(boot.outcome.milestones.map(\.code) == [1, 2, 3])
        #expect(boot.bootProtocol == "pvh")
        #expect(boot.console.contains("HVB1 begin bench=vm.boot cpl=3"))
    }
}

@Suite struct AdaptiveTests {
    @Test func adaptiveRunsAddRoundsUntilTheTargetOrTheBudget() async throws {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        var configuration = RunPlan(
            systems: [.native], suite: tinySuite("cpu.int", iterations: 20_000, repetitions: 3), outputDirectory: output)
        // An impossible target: the round limit ends it (the budget is far away, so no host is too slow).
        configuration.adaptive = AdaptivePolicy(targetRelativeHalfWidth: 1e-9, budgetSeconds: 600, maxRounds: 4)
        let result = try #require(await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration).results.first)
        #expect(result.status == .ok)
        #expect(result.rounds == 4)
        #expect(result.ciTargetMet == false)
        #expect(result.metrics[0].samples.count == 3 * (result.rounds ?? 0))
        // A budget that is spent by the first round ends it there.
        configuration.adaptive = AdaptivePolicy(targetRelativeHalfWidth: 1e-9, budgetSeconds: 1e-9, maxRounds: 20)
        let spent = try #require(await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration).results.first)
        #expect(spent.rounds == 1 && spent.ciTargetMet == false)
        // A generous target is met as soon as there are five samples: two rounds of three.
        configuration.adaptive = AdaptivePolicy(targetRelativeHalfWidth: 10, budgetSeconds: 600)
        let easy = try #require(await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration).results.first)
        #expect(easy.rounds == 2 && easy.ciTargetMet == true)
    }
}

@Suite struct RoundSchedulingTests {
    /// Each round runs every (system, benchmark) pair once, in an order shuffled from the seed;
    /// each result carries one value per round and its summary is across rounds.
    @Test func everyPairRunsOncePerRoundInTheSeedsOrder() async throws {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        var suite = tinySuite("cpu.int", iterations: 20_000, repetitions: 2)
        suite.entries += tinySuite("cpu.callret", iterations: 20_000, repetitions: 2).entries
        var configuration = RunPlan(systems: [.native], suite: suite, outputDirectory: output)
        configuration.rounds = 4
        configuration.seed = 11
        let (results, schedule) = await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration)
        #expect(results.map(\.benchmark) == ["cpu.int", "cpu.callret"])
        #expect(schedule.order.count == 8)
        for round in 0..<4 {
            #expect(Set(schedule.order.filter { $0.round == round }.map(\.benchmark)) == ["cpu.int", "cpu.callret"])
        }
        let expected = (0..<4).flatMap { Schedule(rounds: 4, seed: 11).permutation(round: $0, count: 2) }
        #expect(schedule.order.map { $0.benchmark == "cpu.int" ? 0 : 1 } == expected)
        for result in results {
            #expect(result.status == .ok, "\(result.reason ?? "")")
            #expect(result.rounds == 4)
            #expect(result.metrics.allSatisfy { $0.roundValues?.count == 4 && $0.samples.count == 8 })
        }
    }
}
