import Foundation
import VMM
import TestSupport
import Testing

@testable import Bench
import Results
@testable import KVM
@testable import Machine

/// `hvbench boot` semantics: any PVH or multiboot kernel, exit status from port 0xF4, watchdog.
@Suite struct BootTests {
    func hand(_ code: [UInt8]) -> [UInt8] { TestKernels.multiboot(code: code) }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func multibootKernelPrintsAndExitsWithItsStatus() throws {
        let boot = try VMBuilder.boot(
            kernel: hand(TestKernels.helloAndExit(status: 5)), commandLine: "", memoryMiB: 16, timeout: 300,
            cpu: .kvm(try KVMSystem()))
        #expect(boot.bootProtocol == "multiboot")
        #expect(boot.console == "hi")
        #expect(boot.outcome.ending == .exitDevice(status: 11))
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func watchdogStopsAGuestThatNeverExits() throws {
        let started = Date()
        let boot = try VMBuilder.boot(
            kernel: hand(TestKernels.spinForever), commandLine: "", memoryMiB: 16, timeout: 1, cpu: .kvm(try KVMSystem()))
        #expect(boot.outcome.ending == .timedOut(seconds: 1))
        #expect(Date().timeIntervalSince(started) < 15)
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func theQEMUKernelRunsUnchangedAndReportsBadJobs() async throws {
        let kvm = try KVMSystem()
        let image = try await Built.guestImage()
        let good = try VMBuilder.boot(
            kernel: image, commandLine: "bench=cpu.int iterations=10", memoryMiB: 64, timeout: 300, cpu: .kvm(kvm))
        #expect(good.outcome.ending == .exitDevice(status: 1))
        #expect(good.console.contains("HVB1 done"))
        let bad = try VMBuilder.boot(
            kernel: image, commandLine: "bench=cpu.int iterations=lots", memoryMiB: 64, timeout: 300, cpu: .kvm(kvm))
        #expect(bad.outcome.ending == .exitDevice(status: 5))
        #expect(bad.console.contains("HVB1 fail reason=not-a-number"))
    }
}

/// The same guest image under QEMU, as DESIGN.md requires (`-M pc -kernel guest.elf`).
@Suite struct QEMUCompatibilityTests {
    @Test(.enabled(if: Host.qemu != nil, Host.qemuSkipMessage), arguments: ["cpu.int", "cpu.pgfault", "cpu.ptemod", "cpu.pio"])
    func guestBootsUnderQEMUTCG(_ id: String) async throws {
        let artifacts = try await Built.artifacts.value
        let output = try await ProcessRunner.run(
            Host.qemu!,
            [
                "-M", "pc", "-accel", "tcg", "-m", "128", "-nographic", "-vga", "none", "-no-reboot", "-kernel",
                artifacts.guestImage.path,
                "-append", "bench=\(id) iterations=50 repetitions=2 warmups=0", "-device", "isa-debug-exit,iobase=0xf4",
                "-serial", "stdio",
                "-monitor", "none",
            ], timeout: 600)
        #expect(output.exitCode == 1, "qemu \(output.statusDescription): \(output.standardError)")
        let transcript = try BenchmarkTranscript.parse(console: output.standardOutput.joined(separator: "\n"), bench: id)
        #expect(transcript.status == .ok)
        #expect(transcript.samples.count == 2)
        #expect(transcript.privilegeLevel == 3)
    }
}
