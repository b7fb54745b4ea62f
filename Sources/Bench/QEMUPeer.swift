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

    /// The command line (HOST.md): `-M pc` boots the PVH ELF through SeaBIOS's PVH option ROM;
    /// with KVM, `-cpu host,-arch-capabilities` avoids an abort on MSR 0x10a on these hosts.
    /// I/O devices matching hvbench's modes: e1000 + IDE for qemu-tcg and qemu-kvm, virtio-net +
    /// virtio-blk for qemu-kvm-virtio. The NIC's backend is a UDP socket sending to itself, so
    /// every transmitted frame comes back: an echo for net.rr.
    /// - Parameters:
    ///   - diskReadOnly: a user's image for read benchmarks: QEMU opens it read-only too.
    ///   - tapInterface: `--net-backend tap`: the TAP hvbench made in the run's namespace, which
    ///     QEMU (started inside it) attaches to; the NIC gets the guest's MAC, to which the host
    ///     kernel's neighbour entry points (`mac`: a VM pair's serving guest has its own). `vnet_hdr=off`, as hvbench's own TAP: with the header,
    ///     the kernel hands QEMU datagrams whose UDP checksum is left to an offload the emulated
    ///     NICs do not do, and the guest sees them with bad checksums.
    public static func deviceArguments(
        _ peer: PeerKind, nic: Bool, diskPath: String?, diskReadOnly: Bool = false, tapInterface: String? = nil,
        mac: MACAddress? = nil
    ) -> (arguments: [String], words: [String]) {
        var arguments: [String] = []
        var words: [String] = []
        let virtio = peer == .qemuKVMVirtio
        if nic, let tapInterface {
            arguments += [
                "-netdev", "tap,id=n0,ifname=\(tapInterface),script=no,downscript=no,vnet_hdr=off", "-device",
                "\(virtio ? "virtio-net-pci" : "e1000"),netdev=n0,mac=\(TAPLink.text(mac ?? TAPLink.guestMAC))",
            ]
            words.append("nic=\(virtio ? "virtio" : "e1000")")
        } else if nic {
            let port = Int.random(in: 20000..<60000)
            arguments += [
                "-netdev", "socket,id=n0,udp=127.0.0.1:\(port),localaddr=127.0.0.1:\(port)", "-device",
                virtio ? "virtio-net-pci,netdev=n0" : "e1000,netdev=n0",
            ]
            words.append("nic=\(virtio ? "virtio" : "e1000")")
        }
        if let diskPath {
            // QEMU's option syntax doubles a comma that belongs to a value.
            let file =
                "file=\(diskPath.replacingOccurrences(of: ",", with: ",,")),format=raw\(diskReadOnly ? ",readonly=on" : "")"
            arguments +=
                virtio
                ? ["-drive", "\(file),if=none,id=d0", "-device", "virtio-blk-pci,drive=d0"]
                : ["-drive", "\(file),if=ide"]
            words.append("disk=\(virtio ? "virtio" : "ide")")
        }
        return (arguments, words)
    }

    public static func arguments(_ peer: PeerKind, kernel: URL, commandLine: String, memoryMiB: Int, vcpus: Int = 1)
        -> [String]
    {
        var arguments = ["-M", "pc"]
        if vcpus > 1 { arguments += ["-smp", String(vcpus)] }
        switch peer {
        case .qemuTCG: arguments += ["-accel", "tcg"]
        case .qemuKVM, .qemuKVMVirtio: arguments += ["-accel", "kvm", "-cpu", "host,-arch-capabilities"]
        }
        arguments += [
            "-m", String(memoryMiB), "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio", "-monitor", "none",
            "-device", "isa-debug-exit,iobase=0xf4", "-kernel", kernel.path, "-append", commandLine,
        ]
        return arguments
    }

    /// Why a peer cannot run here, or nil.
    public static func unavailability(_ peer: PeerKind) -> String? {
        guard executable != nil else { return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)" }
        switch peer {
        case .qemuTCG: return nil
        case .qemuKVM: return KVMSystem.unavailabilityReason().map { "QEMU with KVM needs /dev/kvm: \($0)" }
        case .qemuKVMVirtio: return KVMSystem.unavailabilityReason().map { "QEMU with KVM needs /dev/kvm: \($0)" }
        }
    }
}

extension BenchmarkRunner {
    /// One QEMU process for `entry`; vm.boot boots it warmups + repetitions times and times each
    /// from process start to the guest's first console line (QEMU start-up and SeaBIOS included).
    func qemuRound(_ peer: PeerKind, _ entry: Suite.Entry, _ configuration: RunConfiguration) async -> RoundOutcome {
        guard let qemu = QEMUPeer.executable else { return .skipped("qemu-system-x86_64 is not installed") }
        let tscHertz = Double(TSC.calibratedKilohertz) * 1000
        if BenchmarkDefinition.named(entry.id)?.roundKind == .boot {
            var samples: [Double] = []
            for boot in 0..<(entry.warmups + entry.repetitions) {
                let words = jobWords(entry, configuration, repetitions: 1, warmups: 0, tscKHz: TSC.calibratedKilohertz)
                let started = MonotonicClock.nanoseconds()
                let firstLine = FirstLineClock()
                let output: ProcessRunner.Output
                do {
                    output = try await ProcessRunner.run(
                        qemu,
                        QEMUPeer.arguments(
                            peer, kernel: artifacts.guestImage, commandLine: words.joined(separator: " "),
                            memoryMiB: configuration.memoryMiB, vcpus: configuration.vcpus(for: entry.id)),
                        timeout: entry.timeoutSeconds
                    ) { line in if line.hasPrefix("HVB1 hello") { firstLine.mark() } }
                } catch {
                    return .failed("\(error)")
                }
                guard output.exitCode == 1, let reached = firstLine.nanoseconds else {
                    return .failed("boot \(boot): QEMU \(output.statusDescription): \(output.standardError.prefix(300))")
                }
                if boot >= entry.warmups {
                    samples.append(Double(reached - started) / 1e6)
                    progress(.sample)
                }
            }
            return .measured(
                Round(
                    metrics: [MetricSamples(name: "boot_time", unit: "ms", better: .lower, values: samples)], tscHertz: tscHertz,
                    privilege: "cpl3"))
        }
        if BenchmarkDefinition.named(entry.id)?.vmToVM == true {
            return await qemuPairRound(peer, qemu: qemu, entry, configuration)
        }
        var words = jobWords(
            entry, configuration, repetitions: entry.repetitions, warmups: entry.warmups, tscKHz: TSC.calibratedKilohertz)
        let definition = BenchmarkDefinition.named(entry.id)
        // Without hvbench's TAP link QEMU has nothing to receive from; over it, the kernel peer
        // is the source.
        if let why = definition?.qemuUnsupported, configuration.netBackend != .tap { return .skipped(why) }
        var opened: BenchmarkDisk.Opened?
        if let definition, definition.needsDisk {
            do { opened = try openDisk(definition, configuration) } catch { return .failed("\(error)") }
            words += ["region_sectors=\(configuration.diskRegionSectors)"] + (opened?.jobWords ?? [])
        }
        let disk = opened?.image
        // --net-backend tap: the same TAP path as hvbench's VMs, QEMU started inside the namespace.
        var link: TAPLink?
        defer { link?.close() }
        if configuration.netBackend == .tap, let role = definition?.peerRole {
            switch TAPLink.make(for: role, attachment: .qemu, configuration) {
            case .success(let made): link = made
            case .failure(let problem): return .skipped(problem.description)
            }
            words += link?.jobWords ?? []
        }
        let devices = QEMUPeer.deviceArguments(
            peer, nic: definition?.needsNIC == true, diskPath: disk?.path, diskReadOnly: opened?.patterned == false,
            tapInterface: link == nil ? nil : TAPLink.interface)
        words += devices.words
        var arguments =
            QEMUPeer.arguments(
                peer, kernel: artifacts.guestImage, commandLine: words.joined(separator: " "), memoryMiB: configuration.memoryMiB,
                vcpus: configuration.vcpus(for: entry.id))
            + devices.arguments
        var executable = qemu
        if let link, let nsenter = ProcessRunner.find("nsenter") {
            executable = nsenter
            arguments = Array(link.namespace.enterCommand.dropFirst()) + [qemu] + arguments
        }
        let output: ProcessRunner.Output
        do {
            // A kernel source sends once the guest has begun: QEMU attaches to the TAP only as it
            // starts, and what the TAP queued before then comes out with unfinished checksums.
            let source = link?.peer
            output = try await ProcessRunner.run(executable, arguments, timeout: entry.timeoutSeconds) { line in
                if line.hasPrefix("HVB1 begin") { source?.release() }
                self.reportSamples(line)
            }
        } catch {
            return .failed("\(error)")
        }
        let console = output.standardOutput.joined(separator: "\n")
        saveLog(
            "$ \(qemu) \(arguments.joined(separator: " "))\n\(console)\n\(output.standardError)\n# \(output.statusDescription)\n",
            system: peer.rawValue, benchmark: entry.id, configuration)
        if output.timedOut { return .failed("QEMU exceeded its \(Int(entry.timeoutSeconds)) s time limit and was killed") }
        // QEMU's TCG and KVM both give the guest the host TSC rate.
        let outcome = interpret(console, entry: entry, tscHertz: tscHertz, privilege: { "cpl\($0)" })
        if case .measured = outcome, let disk, let problem = verifyWrites(entry, disk, configuration) { return .failed(problem) }
        if case .measured = outcome, let link {
            let problem = link.problem(afterGuestSent: (entry.warmups + entry.repetitions) * Int(entry.iterations))
            saveLog("# \(link.summary)\n", system: peer.rawValue, benchmark: entry.id + ".tap", configuration)
            if let problem { return .failed(problem) }
        }
        return outcome
    }
}

/// The time the first matching console line arrived (set from the output reader).
final class FirstLineClock: Sendable {
    private let value = Mutex<UInt64?>(nil)
    func mark() { value.withLock { if $0 == nil { $0 = MonotonicClock.nanoseconds() } } }
    var nanoseconds: UInt64? { value.withLock { $0 } }
}
