import Differential
import Foundation
import VMM
import TestSupport
import Testing

@testable import Bench
import Results
@testable import KVM
@testable import Machine
@testable import X86

/// The x86-64 emulator as a CPU engine: the benchmark guest, hand-made kernels, and the
/// differential tests against KVM (live where /dev/kvm works, from the committed corpus everywhere).
@Suite(.serialized) struct EmulatorTests {
    @Test func committedCorpusMatchesKVMsRecordedOutputs() throws {
        let corpus = try Workspace.locate().root.appendingPathComponent("Workloads/emulator/differential-corpus.txt")
        for emulator in EmulatorKind.allCases {
            let report = try EmulatorSelfTest.checkCorpus(at: corpus, emulator: emulator)
            #expect(report.cases == 2000)
            #expect(report.faultedAlike > 0, "the corpus includes cases that raise exceptions")
            #expect(report.mismatches.isEmpty, "\(report.mismatches.prefix(5).map(\.description).joined(separator: "\n"))")
        }
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func liveDifferentialCasesAgreeWithKVM() throws {
        // A different seed from the corpus, so the two checks cover different sequences.
        let report = try EmulatorSelfTest.compare(seed: 20_261_121, range: 0..<6000, kvm: try KVMSystem())
        #expect(report.cases == 12000, "6000 cases, each under the translator and the interpreter")
        #expect(Set(report.secondsByEmulator.keys) == Set(EmulatorKind.allCases))
        #expect(report.mismatches.isEmpty, "\(report.mismatches.prefix(5).map(\.description).joined(separator: "\n"))")
    }

    @Test func casesAreAPureFunctionOfSeedAndIndex() {
        let generator = DifferentialCaseGenerator(seed: 99)
        #expect(generator.makeCase(index: 1234) == generator.makeCase(index: 1234))
        #expect(generator.makeCase(index: 1234) != generator.makeCase(index: 1235))
        #expect(generator.makeCase(index: 1234 + DifferentialHarness.maximumCases).slot == generator.makeCase(index: 1234).slot)
    }

    @Test func aMismatchIsReportedWithWhatDiffers() {
        let expected = DifferentialOutcome(
            status: 1, registers: Array(repeating: 0, count: 16), rflags: 0x8D5, finalRIP: 10, data: [1, 2])
        var actual = expected
        actual.registers[2] = 7
        actual.rflags = 0
        actual.data = [1, 3]
        let found = DifferentialHarness.differences(expected: expected, actual: actual, flagMask: 0x1)
        #expect(found.count == 3)
        #expect(found[0].hasPrefix("rdx"))
        #expect(DifferentialHarness.differences(expected: expected, actual: expected, flagMask: ~0).isEmpty)
        // Undefined flags (outside the mask) never count.
        #expect(
            DifferentialHarness.differences(
                expected: expected,
                actual: {
                    var o = expected; o.rflags ^= 0x10; return o
                }(), flagMask: 0x1
            ).isEmpty)
    }

    @Test func unimplementedInstructionRaisesUDAndIsReported() throws {
        // pshufb (SSSE3, not offered) is outside the instruction set: the guest gets #UD, the run names rip and bytes.
        var testCase = DifferentialCaseGenerator(seed: 1).makeCase(index: 0)
        testCase.code =
            [0x66, 0x0F, 0x38, 0x00, 0xC1] + [0xFF, 0x14, 0x25]
            + withUnsafeBytes(of: UInt32(DifferentialHarness.returnSlot).littleEndian, Array.init)
        var diagnostics: [String] = []
        let boot = try VMBuilder.boot(
            VMDescription(
                kernel: DifferentialHarness.kernelImage(), commandLine: "", memoryMiB: DifferentialHarness.memoryMiB,
                cpu: .emulator()), timeout: 300, prepare: { try DifferentialHarness.prepare($0, cases: [testCase]) },
            inspect: { memory in
                let outcome = try? DifferentialHarness.outcomes(memory, cases: [testCase])
                diagnostics.append("status \(outcome?.first?.status ?? 0)")
            })
        #expect(boot.outcome.ending == .exitDevice(status: 1))
        #expect(diagnostics == ["status \(0x100 + 6)"])
        let address = String(DifferentialHarness.codeAddress(ofCase: testCase.slot), radix: 16)
        #expect(boot.engineDiagnostics.contains { $0.contains("rip 0x\(address): 66 0f 38 00 c1") }, "\(boot.engineDiagnostics)")
    }

    @Test func multibootKernelPrintsAndExitsUnderTheEmulator() throws {
        let boot = try VMBuilder.boot(
            VMDescription(
                kernel: TestKernels.multiboot(code: TestKernels.helloAndExit(status: 5)), commandLine: "", memoryMiB: 16,
                cpu: .emulator()), timeout: 300)
        #expect(boot.engineName == "emulator-translate")
        #expect(boot.console == "hi")
        #expect(boot.outcome.ending == .exitDevice(status: 11))
        #expect(boot.instructionsRetired ?? 0 >= 6)
    }

    @Test func watchdogStopsASpinningGuestUnderTheEmulator() throws {
        // The ending says the watchdog stopped it (a guest that ended otherwise says so).
        let boot = try VMBuilder.boot(
            VMDescription(
                kernel: TestKernels.multiboot(code: TestKernels.spinForever), commandLine: "", memoryMiB: 16, cpu: .emulator()),
            timeout: 1)
        #expect(boot.outcome.ending == .timedOut(seconds: 1))
    }

    @Test func aGuestThatJumpsOutOfRAMIsStoppedNotTheVMM() throws {
        // 32-bit: jmp to 0xF0000000 (no RAM there) -> the VM ends with a reason; the process lives on.
        let code: [UInt8] = [0xB8, 0x00, 0x00, 0x00, 0xF0, 0xFF, 0xE0]
        let boot = try VMBuilder.boot(
            VMDescription(kernel: TestKernels.multiboot(code: code), commandLine: "", memoryMiB: 16, cpu: .emulator()),
            timeout: 300)
        guard case .shutdown(let why) = boot.outcome.ending else {
            Issue.record("expected a shutdown, got \(boot.outcome.ending)")
            return
        }
        #expect(why.contains("outside guest RAM"))
    }

    /// Every CPU benchmark under both emulators, interleaved in one run: the same result lines
    /// (status, metrics, sample counts, interrupts), timings aside.
    @Test(arguments: everySingleVMBenchmark.filter { !$0.hasPrefix("net.") && !$0.hasPrefix("disk.") })
    func everyCPUBenchmarkRunsInFullEmulation(_ id: String) async throws {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        var configuration = RunPlan(systems: [.fullEmulation], suite: tinySuite(id), outputDirectory: output)
        configuration.systems.append(.fullEmulationInterpret)
        let results = await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration).results
        try #require(results.count == 2)
        for (result, engine) in zip(results, ["emulator-translate", "emulator-interpret"]) {
            #expect(result.status == .ok, "\(id) \(engine): \(result.reason ?? "")")
            #expect(result.engine == engine)
            #expect(result.vcpus == BenchmarkDefinition.named(id)?.minimumCPUs ?? 1)
            #expect(result.privilege == "cpl3")
            for metric in result.metrics {
                #expect(metric.samples.count == 2)
                #expect(metric.samples.allSatisfy { $0 > 0 && $0.isFinite }, "\(id) \(metric.name): \(metric.samples)")
            }
            if id == "cpu.pio" { #expect((result.exits?.unclaimedPortReads ?? 0) >= 40) }
            if id == "cpu.mmio" { #expect((result.exits?.mmio ?? 0) >= 40) }
            if id.hasPrefix("irq.") || id == "cpu.ipi-self" {
                // 2 repetitions of 20 operations and a latency pass of 20: one timer interrupt each,
                // and every handler ends it with an EOI.
                let exits = try #require(result.exits)
                #expect(exits.interrupts == 60, "\(id) \(engine): \(exits)")
                #expect(exits.endOfInterrupts == exits.interrupts)
            }
        }
        #expect(results[0].metrics.map(\.name) == results[1].metrics.map(\.name))
        #expect(results[0].system == "full-emulation" && results[1].system == "full-emulation-interpret")
    }

    /// Results name the engine that ran, not the one asked for: a translating emulator whose
    /// host refuses its code cache (here: a cache larger than the address space) interprets,
    /// and the result says so.
    @Test func resultsNameTheEngineThatRan() async throws {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        var plan = RunPlan(
            systems: [.fullEmulation], suite: tinySuite("cpu.int"), outputDirectory: output)
        let asked = try #require(await BenchmarkRunner(artifacts: artifacts) { _ in }.run(plan).results.first)
        #expect(asked.status == .ok && asked.engine == "emulator-translate", "\(asked.reason ?? "")")
        plan.vm.codeCacheBytes = 1 << 52  // beyond x86-64's 47-bit user address space: mmap fails
        let refused = try #require(await BenchmarkRunner(artifacts: artifacts) { _ in }.run(plan).results.first)
        #expect(refused.status == .ok, "\(refused.reason ?? "")")
        #expect(refused.engine == "emulator-interpret")
        // vm.boot's engine comes from its boots as well.
        plan.suite = tinySuite("vm.boot")
        let boot = try #require(await BenchmarkRunner(artifacts: artifacts) { _ in }.run(plan).results.first)
        #expect(boot.status == .ok && boot.engine == "emulator-interpret", "\(boot.reason ?? "")")
    }

    @Test(arguments: [
        ("disk.rand-read-4k", SystemDefinition.fullEmulation), ("disk.rand-write-4k", .emulatorVirtio),
        ("net.tx-64", .fullEmulation),
        ("net.rr", .emulatorVirtio), ("net.tx-1500-irq", .fullEmulation), ("net.rr-irq", .emulatorVirtio),
        ("disk.lat-4k-irq", .fullEmulation), ("disk.rand-read-4k-irq", .emulatorVirtio),
        ("net.tx-1500-irq-moderated", .fullEmulation), ("net.rr-irq-intx", .emulatorVirtio),
    ])
    func devicesWorkUnderTheEmulator(_ id: String, _ system: SystemDefinition) async throws {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        var configuration = RunPlan(systems: [system], suite: tinySuite(id), outputDirectory: output)
        configuration.network.backend = .vmm  // device-model cost alone; the TAP path runs in NetworkNamespaceTests
        configuration.disk.regionSectors = 4096
        configuration.systems.append(try #require(system.pinning(.interpret)))  // both emulators, interleaved in one run
        let results = await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration).results
        try #require(results.count == 2)
        for (result, engine) in zip(results, ["emulator-translate", "emulator-interpret"]) {
            #expect(result.status == .ok, "\(id) on \(system.name), \(engine): \(result.reason ?? "")")
            #expect(result.engine == engine)
            try checkInterrupts(of: result, id, system)
        }
        #expect(results[0].metrics.map(\.name) == results[1].metrics.map(\.name))
    }

    private func checkInterrupts(of result: BenchmarkResult, _ id: String, _ system: SystemDefinition) throws {
        let exits = try #require(result.exits)
        if id.hasSuffix("-moderated") {
            // ITR holds interrupts back (how many depends on how fast the emulator sends), and
            // hvbench's IOAPIC delivers each once: at most one per frame.
            #expect(try #require(exits.interrupts) <= exits.operations && exits.endOfInterrupts == exits.interrupts)
            return
        }
        guard id.hasSuffix("-irq") || id.hasSuffix("-intx") else { return }
        // hvbench's IOAPIC and local APIC: exactly one interrupt per frame, response or request
        // (e1000 INTx, level-triggered; IDE IRQ 14, edge; virtio MSI-X, or its INTx line with
        // MSI-X off), each ended with one EOI; only the legacy devices and virtio's INTx read a
        // cause register.
        #expect(exits.interrupts == exits.operations, "\(exits)")
        #expect(exits.endOfInterrupts == exits.interrupts)
        if system == .fullEmulation || id.hasSuffix("-intx") {
            #expect(try #require(exits.interruptCauseReads) >= exits.operations)
        } else {
            #expect(exits.interruptCauseReads == 0)
        }
    }
}
