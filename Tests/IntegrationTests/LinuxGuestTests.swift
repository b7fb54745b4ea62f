import Foundation
import Testing

@testable import Bench
import KVM
import Machine
import Results
import VMM

/// The Linux guest built from Debian's packages: Debian's kernel and a busybox initramfs
/// with hvbench's /init, booted to its shell by hvbench's emulator and by QEMU with TCG (on a
/// kvm_pvm host the KVM systems are skipped with the measured reason, docs/linux-guest.md).
@Suite(.serialized) struct LinuxGuestTests {
    static let image = Task { () -> Result<LinuxGuestBuilder.Image, Error> in
        do { return .success(try await LinuxGuestBuilder(workspace: try Workspace.locate()).build()) } catch {
            return .failure(error)
        }
    }

    static func available() async -> Bool {
        if case .success = await image.value { return true }
        return false
    }

    @Test func theInitramfsIsANewcArchive() throws {
        var archive = CPIOArchive()
        archive.add("bin", .directory)
        archive.add("init", .file(executable: true), data: Array("#!/bin/sh\n".utf8))
        let bytes = archive.finish()
        #expect(bytes.count % 4 == 0)
        let header = String(decoding: bytes.prefix(110), as: UTF8.self)
        #expect(header.hasPrefix("070701") && header.count == 110)
        // Entry 2 (after the directory's 110 + "bin\0" = 114, padded to 116): mode 0100755, 10 bytes.
        let second = String(decoding: bytes[116..<226], as: UTF8.self)
        #expect(second.dropFirst(14).prefix(8) == "000081ED" && second.dropFirst(54).prefix(8) == "0000000A")
        #expect(String(decoding: bytes.suffix(16), as: UTF8.self).contains("TRAILER!!!"))
    }

    @Test(
        .enabled(if: Host.qemu != nil, Host.qemuSkipMessage),
        .linuxGuestAvailable)
    func debiansKernelBootsToInitUnderQEMUWithTCG() async throws {
        let image = try await Self.image.value.get()
        let disk = temporaryDirectory().appendingPathExtension("img")
        defer { try? FileManager.default.removeItem(at: disk) }
        FileManager.default.createFile(atPath: disk.path, contents: Data(count: 1 << 20))
        // A virtio NIC (its backend a UDP socket to itself on loopback) and an IDE disk: /init
        // loads virtio_net, ata_piix and sd_mod from the initramfs and lists what they found.
        let port = Int.random(in: 20000..<60000)
        let output = try await ProcessRunner.run(
            Host.qemu!,
            [
                "-M", "pc", "-accel", "tcg", "-m", "512", "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio",
                "-monitor", "none", "-kernel", image.kernel.path, "-initrd", image.initramfs.path, "-append",
                "console=ttyS0 panic=-1 quiet bench=no.such", "-netdev",
                "socket,id=n0,udp=127.0.0.1:\(port),localaddr=127.0.0.1:\(port)",
                "-device", "virtio-net-pci,netdev=n0", "-drive", "file=\(disk.path),format=raw,if=ide",
            ], timeout: 600)
        #expect(output.exitCode == 0, "\(output.statusDescription): \(output.standardError)")
        let lines = output.standardOutput
        let results = lines.compactMap { try? ResultLine.parse($0) }
        // The job from the command line reaches /init: an unknown one is a failure in the grammar.
        #expect(
            results == [.hello(guest: "hvbench-linux-1"), .fail(bench: "no.such", reason: "unknown-benchmark"), .done],
            "\(lines.suffix(20))")
        #expect(lines.contains { $0.hasPrefix("Linux (none) ") && $0.contains("x86_64") }, "uname -a")
        #expect(lines.contains { $0.hasPrefix("model name") }, "/proc/cpuinfo")
        #expect(lines.contains { $0.hasPrefix("network interfaces:") && $0.contains("eth0") }, "\(lines.suffix(6))")
        #expect(lines.contains { $0.hasPrefix("block devices:") && $0.contains("sda") }, "\(lines.suffix(6))")
    }

    /// Linux's own drivers on hvbench's virtio devices in the emulator: virtio_net and
    /// virtio_blk bind, /init lists `eth0` and `vda` (it took logical-mode MSIs and the DSDT's
    /// PCI host bridge). The NIC's peer is the VMM's sink; nothing leaves the process.
    @Test(
        .linuxGuestAvailable)
    func linuxDriversFindHvbenchsVirtioDevicesInTheEmulator() async throws {
        let disk = temporaryDirectory().appendingPathExtension("img")
        defer { try? FileManager.default.removeItem(at: disk) }
        FileManager.default.createFile(atPath: disk.path, contents: Data(count: 4 << 20))
        // In a process of its own: the test runner records a backtrace at every Swift throw,
        // and the emulator throws at every device access (about five times slower in-process).
        let boot = try await CommandLineTests().hvbench(
            [
                "boot", "linux", "--cpu", "emulator", "--io", "virtio", "--disk-image", disk.path, "--memory", "256",
                "--timeout", "600", "--cmdline", "console=ttyS0 panic=-1 quiet",
            ], timeout: 700)
        let lines = boot.standardOutput
        #expect(boot.exitCode == 0, "\(boot.statusDescription): \(boot.standardError.suffix(400))")
        #expect(lines.contains { $0.hasPrefix("network interfaces:") && $0.contains("eth0") }, "\(lines.suffix(8))")
        #expect(lines.contains { $0.hasPrefix("block devices:") && $0.contains("vda") }, "\(lines.suffix(8))")
        #expect(!boot.standardError.contains("device error"), "\(boot.standardError.suffix(400))")
    }

    /// linux.boot through the runner: hvbench's emulator and QEMU with TCG boot the Linux guest
    /// to its shell (a boot_time per boot; /init ran its job at CPL3, printed `uname -a` and the
    /// CPU flags the emulator advertises); native has no VM to boot; KVM systems on a kvm_pvm host
    /// are skipped with the measured reason. One measured boot each, no warm-up.
    @Test(
        .enabled(if: Host.qemu != nil, Host.qemuSkipMessage),
        .linuxGuestAvailable)
    func linuxBootIsMeasuredOrSkippedWithItsReason() async throws {
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        // `hvbench run` in a process of its own, for the reason above.
        let run = try await CommandLineTests().hvbench(
            [
                "run", "--bench", "linux.boot", "--mode", "native,full-emulation,hardware-assist", "--peer", "qemu-tcg",
                "--rounds", "1", "--repetitions", "1", "--warmups", "0", "--memory", "512", "--out", output.path,
            ], timeout: 900)
        #expect(run.exitCode == 0, "\(run.statusDescription): \(run.standardError.suffix(600))")
        let results = try RunResults.load(from: output.appendingPathComponent("results.json")).results
        func result(_ system: SystemDefinition) throws -> BenchmarkResult {
            try #require(results.first { $0.system == system.name })
        }
        let tcg = try result(.qemuTCG)
        #expect(tcg.status == .ok, "\(tcg.reason ?? "")")
        let boots = try #require(tcg.metrics.first { $0.name == "boot_time" })
        #expect(boots.samples.count == 1 && boots.samples.allSatisfy { $0 > 0 && $0.isFinite })
        #expect(try result(.native).status == .skipped)
        let emulated = try result(.fullEmulation)
        #expect(emulated.status == .ok, "\(emulated.reason ?? "")")
        #expect(emulated.metrics.first { $0.name == "boot_time" }?.samples.count == 1)
        let toInit = try #require(emulated.metrics.first { $0.name == "to_init" }, "/init's milestone on port 0x80")
        #expect(toInit.samples.count == 1 && toInit.samples[0] > 0)
        #expect(toInit.samples[0] < emulated.metrics.first { $0.name == "boot_time" }!.samples[0], "before its hello")
        let log = try String(contentsOf: output.appendingPathComponent("logs/full-emulation/linux.boot.log"), encoding: .utf8)
        #expect(log.contains("Linux (none) 6.1"), "uname -a ran in the emulated guest")
        let flags = log.split(whereSeparator: \.isNewline).first { $0.hasPrefix("flags") } ?? ""
        #expect(
            ["fpu", "fxsr", "sse", "sse2", "pni"].allSatisfy { flags.split(separator: " ").contains(Substring($0)) }, "\(flags)")
        let kvm = try result(.hardwareAssist)
        if KVMSystem.moduleEmulatesGuestKernel {
            #expect(kvm.status == .skipped && kvm.reason?.contains("int3") == true, "\(kvm.reason ?? "")")
        }
    }
}

extension Trait where Self == ConditionTrait {
    /// Debian's kernel and busybox can be fetched and the Linux guest built here.
    static var linuxGuestAvailable: Self {
        .enabled("Debian's linux-image-amd64 and busybox-static cannot be fetched here (apt-get download)") {
            await LinuxGuestTests.available()
        }
    }
}
