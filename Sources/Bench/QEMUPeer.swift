import Foundation
import Results
import Synchronization
import KVM
import Machine
import VMM

/// QEMU running the same guest image, for side-by-side comparison with hvbench's VMM.
public enum QEMUPeer {
    public static var executable: String? { ProcessRunner.find("qemu-system-x86_64") }

    public static func version() async -> String? {
        guard let executable, let output = try? await ProcessRunner.run(executable, ["--version"], timeout: 30), output.succeeded
        else {
            return nil
        }
        return output.standardOutput.first
    }

    /// QEMU's options for the devices of `devices`, and what the guest's job must say of them.
    /// The NIC's backend is the TAP hvbench made in the run's namespace (`tapInterface`, QEMU
    /// started inside it), with the guest's MAC, to which the host kernel's neighbour entry
    /// points (`mac`: a VM pair's serving guest has its own); `vnet_hdr=off`, as hvbench's own
    /// TAP: with the header, the kernel hands QEMU datagrams whose UDP checksum is left to an
    /// offload the emulated NICs do not do, and the guest sees them with bad checksums. Without
    /// a TAP it is a UDP socket sending to itself, so every transmitted frame comes back: an
    /// echo for net.rr.
    /// - Parameters:
    ///   - diskReadOnly: a user's image for read benchmarks: QEMU opens it read-only too.
    static func deviceArguments(
        _ devices: SystemDefinition.Devices, nic: Bool, diskPath: String?, diskReadOnly: Bool = false,
        tapInterface: String? = nil, mac: MACAddress? = nil, balloon: Bool = false, job: inout GuestJob
    ) -> [String] {
        var arguments: [String] = []
        if nic, let tapInterface {
            arguments += [
                "-netdev", "tap,id=n0,ifname=\(tapInterface),script=no,downscript=no,vnet_hdr=off", "-device",
                "\(devices.qemuNIC),netdev=n0,mac=\(TAPLink.text(mac ?? TAPLink.guestMAC))",
            ]
        } else if nic {
            let port = Int.random(in: 20000..<60000)
            arguments += [
                "-netdev", "socket,id=n0,udp=127.0.0.1:\(port),localaddr=127.0.0.1:\(port)", "-device",
                "\(devices.qemuNIC),netdev=n0",
            ]
        }
        if nic { job.nic = devices.guestNIC }
        if let diskPath {
            // QEMU's option syntax doubles a comma that belongs to a value.
            let file =
                "file=\(diskPath.replacingOccurrences(of: ",", with: ",,")),format=raw\(diskReadOnly ? ",readonly=on" : "")"
            arguments += devices.qemuDrive(file)
            job.disk = devices.guestDisk
        }
        if balloon {
            // Inflated pages are discarded from QEMU's RAM (MADV_DONTNEED), as hvbench's device does.
            arguments += ["-device", "virtio-balloon-pci"]
            job.balloon = true
        }
        return arguments
    }

    /// The command line (HOST.md): `-M pc` boots the PVH ELF through SeaBIOS's PVH option ROM;
    /// with KVM, `-cpu host,-arch-capabilities` avoids an abort on MSR 0x10a on these hosts.
    public static func arguments(kvm: Bool, kernel: URL, commandLine: String, memoryMiB: Int, vcpus: Int = 1) -> [String] {
        var arguments = ["-M", "pc"]
        if vcpus > 1 { arguments += ["-smp", String(vcpus)] }
        arguments += kvm ? ["-accel", "kvm", "-cpu", "host,-arch-capabilities"] : ["-accel", "tcg"]
        arguments += [
            "-m", String(memoryMiB), "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio", "-monitor", "none",
            "-device", "isa-debug-exit,iobase=0xf4", "-kernel", kernel.path, "-append", commandLine,
        ]
        return arguments
    }

    /// Runs QEMU with `arguments` once and times it from its start to the console line in which
    /// the guest says hello (QEMU's start-up and firmware included); nil when none came.
    static func timeToHello(_ qemu: String, _ arguments: [String], timeout: Double) async throws -> (
        milliseconds: Double?, output: ProcessRunner.Output
    ) {
        let hello = FirstLineClock()
        let started = MonotonicClock.nanoseconds()
        let output = try await ProcessRunner.run(qemu, arguments, timeout: timeout) { line in
            if case .hello? = try? ResultLine.parse(line) { hello.mark() }
        }
        return (hello.nanoseconds.map { Double($0 - started) / 1e6 }, output)
    }

    /// Why QEMU (with KVM, or with TCG) cannot run here, or nil.
    public static func unavailability(kvm: Bool) -> String? {
        guard executable != nil else { return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)" }
        guard kvm else { return nil }
        return KVMSystem.unavailabilityReason().map { "QEMU with KVM needs /dev/kvm: \($0)" }
    }
}

/// The time the first matching console line arrived (set from the output reader).
final class FirstLineClock: Sendable {
    private let value = Mutex<UInt64?>(nil)
    func mark() { value.withLock { if $0 == nil { $0 = MonotonicClock.nanoseconds() } } }
    var nanoseconds: UInt64? { value.withLock { $0 } }
}
