import Foundation
import Testing
import VMM

@testable import Bench
@testable import KVM
@testable import Machine

/// A foreign SMP kernel written for `qemu -smp 2 -kernel` (Tests/ForeignKernels/smp-multiboot):
/// multiboot, 32-bit, it finds the other CPUs in the ACPI MADT (the MP table where there is no
/// ACPI), starts them with INIT-SIPI-SIPI into a real-mode trampoline, every CPU prints to COM1,
/// and it powers off through the FADT's PM1a control block with \_S5's sleep type.
@Suite(.serialized) struct ForeignSMPKernelTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("ForeignKernels/smp-multiboot")

    /// Built with the Swift toolchain's clang and ld.lld, as the benchmark guest is.
    static func build() async throws -> URL {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-foreign-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let clang = try ArtifactBuilder.tool("clang")
        let flags = ["--target=i386-unknown-none-elf", "-ffreestanding", "-nostdlib", "-fno-pic", "-O2", "-mgeneral-regs-only"]
        var objects: [String] = []
        for source in ["entry.S", "kernel.c"] {
            let object = scratch.appendingPathComponent(source + ".o").path
            let compiled = try await ProcessRunner.run(
                clang, flags + ["-c", sources.appendingPathComponent(source).path, "-o", object], timeout: 120)
            #expect(compiled.succeeded, "\(compiled.standardError)")
            objects.append(object)
        }
        let kernel = scratch.appendingPathComponent("foreign-smp.elf")
        let linked = try await ProcessRunner.run(
            try ArtifactBuilder.tool("ld.lld"),
            ["-m", "elf_i386", "-T", sources.appendingPathComponent("link.ld").path, "-nostdlib", "-o", kernel.path] + objects,
            timeout: 120)
        #expect(linked.succeeded, "\(linked.standardError)")
        return kernel
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage), arguments: [2, 3])
    func bootsItsCPUsAndPowersOffUnderKVM(vcpus: Int) async throws {
        try await bootsItsCPUsAndPowersOff(vcpus: vcpus, cpu: .kvm(try KVMSystem()))
    }

    /// The emulator's application processors start in real mode at the SIPI vector and run the
    /// trampoline's 16-bit code, lgdt, the switch to protected mode and the far jump.
    @Test(arguments: [2, 3])
    func bootsItsCPUsAndPowersOffInTheEmulator(vcpus: Int) async throws {
        try await bootsItsCPUsAndPowersOff(vcpus: vcpus, cpu: .emulator())
    }

    func bootsItsCPUsAndPowersOff(vcpus: Int, cpu: VMBuilder.CPU) async throws {
        let kernel = try await Self.build()
        defer { try? FileManager.default.removeItem(at: kernel.deletingLastPathComponent()) }
        let boot = try VMBuilder.boot(
            VMDescription(kernel: [UInt8](try Data(contentsOf: kernel)), commandLine: "", memoryMiB: 32, cpu: cpu, vcpus: vcpus),
            timeout: 300)
        #expect(boot.bootProtocol == "multiboot")
        #expect(boot.outcome.ending == .poweredOff, "\(boot.outcome.ending.summary): \(boot.console)")
        for id in 1..<vcpus { #expect(boot.console.contains("foreign-smp: cpu up, APIC id \(id)\n"), "\(boot.console)") }
        #expect(boot.console.contains("foreign-smp: cpus from the ACPI MADT, running \(vcpus)\n"), "\(boot.console)")
        #expect(boot.console.contains("foreign-smp: powering off, SLP_TYP 5"))
    }

    /// The same image under QEMU, which it was written for: SeaBIOS's tables, \_S5 = 0.
    @Test(.enabled(if: Host.qemu != nil, Host.qemuSkipMessage))
    func bootsItsCPUsAndPowersOffUnderQEMU() async throws {
        let kernel = try await Self.build()
        defer { try? FileManager.default.removeItem(at: kernel.deletingLastPathComponent()) }
        let output = try await ProcessRunner.run(
            Host.qemu!,
            [
                "-M", "pc", "-accel", "tcg", "-smp", "2", "-m", "64", "-display", "none", "-nodefaults", "-no-reboot", "-serial",
                "stdio", "-monitor", "none", "-kernel", kernel.path,
            ], timeout: 300)
        let console = output.standardOutput.joined(separator: "\n")
        #expect(output.exitCode == 0, "\(output.statusDescription): \(console) \(output.standardError)")
        #expect(console.contains("foreign-smp: cpu up, APIC id 1"), "\(console)")
        #expect(console.contains("foreign-smp: cpus from the ACPI MADT, running 2"), "\(console)")
    }
}
