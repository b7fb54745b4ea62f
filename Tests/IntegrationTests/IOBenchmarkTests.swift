import Foundation
import Machine
import Testing

@testable import Bench
import Results

/// The device benchmarks on the in-VMM peer; the VM-to-VM ones need the TAP backend's bridge
/// and run in `VMPairTests`; the Linux guest's jobs are `LinuxWorkloadTests`.
let ioBenchmarks = BenchmarkDefinition.all.filter {
    ($0.needsNIC || $0.needsDisk) && !$0.vmToVM && $0.guest == .benchmarkGuest
}.map(\.id)

@Suite(.serialized) struct IOBenchmarkTests {
    func run(_ id: String, on system: SystemDefinition, ioThread: Bool = true, pollMicroseconds: UInt64? = nil) async throws
        -> BenchmarkResult
    {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        var configuration = RunPlan(systems: [system], suite: tinySuite(id), outputDirectory: output)
        configuration.disk.regionSectors = 4096
        configuration.network.backend = .vmm  // device-model cost alone; the TAP path runs in NetworkNamespaceTests
        configuration.vm.ioThread = ioThread
        if let pollMicroseconds { configuration.vm.ioThreadPollMicroseconds = pollMicroseconds }
        return try #require(await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration).results.first)
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage), arguments: ioBenchmarks)
    func emulatedDevicesUnderKVM(_ id: String) async throws {
        let result = try await run(id, on: .hardwareAssist)
        #expect(result.status == .ok, "\(id): \(result.reason ?? "")")
        #expect(result.metrics.allSatisfy { $0.samples.allSatisfy { $0 > 0 && $0.isFinite } })
        let exits = try #require(result.exits)
        #expect(exits.operations > 0)
        if id.hasPrefix("disk") { #expect(exits.portIO > exits.operations, "IDE moves data with port I/O") }
        if id.hasPrefix("net") {
            #expect(exits.notifications > 0, "e1000 tail writes are counted")
            // The driver's set-up writes (ring bases, addresses, the multicast table) went into
            // KVM's coalesced-MMIO ring, and the data was still right: applied in order.
            #expect(try #require(exits.coalescedWrites) > 0, "\(exits)")
        } else {
            #expect(exits.coalescedWrites == 0, "the IDE disk has no coalesced registers: \(exits)")
        }
        // INTx or IRQ 14: at least one interrupt per frame (TXDW or RXT0) or request (the end
        // of its DMA), each handler reading ICR or the ATA status.
        if id.contains("-irq") {
            let injected = try #require(exits.interrupts)
            // The guest's own handlers count what it took, spurious deliveries included. KVM's
            // irq_injections statistic agrees within a few: on the AMD host it counts an
            // injection again when an exit (a device timer's kick, say) interrupts its delivery,
            // and now and then one fewer.
            let counted = try #require(result.guestInterrupts)
            #expect(4 * abs(counted.taken - injected) <= max(counted.taken, injected), "\(counted) vs \(exits)")
            #expect(counted.operations == exits.operations)
            // ITR (the moderated variant) holds interrupts back; kvm_pvm delivers each twice.
            if id.hasSuffix("-moderated") {
                #expect(counted.taken > 0 && counted.taken <= 2 * exits.operations, "\(id): \(counted)")
            } else {
                #expect(counted.taken >= exits.operations, "\(id): \(counted)")
            }
            #expect(try #require(exits.interruptCauseReads) >= counted.taken, "\(exits)")
        }
        #expect(exits.interruptsByEventFD == 0, "the e1000 and IDE raise INTx lines, never messages: \(exits)")
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage), arguments: ioBenchmarks)
    func virtioDevicesUnderKVM(_ id: String) async throws {
        let result = try await run(id, on: .paravirtIO)
        #expect(result.status == .ok, "\(id): \(result.reason ?? "")")
        let exits = try #require(result.exits)
        #expect(exits.notifications > 0)
        // Doorbells are ioeventfds served by the I/O thread: none costs the vCPU an exit.
        let routed = try #require(exits.ioThreadNotifications, "\(exits)")
        #expect(routed == exits.notifications, "every notify write is 16 bits wide and routed: \(exits)")
        // virtio moves data through shared memory: far fewer exits per operation than the data size.
        if id.hasPrefix("disk") { #expect(try #require(exits.notificationsPerOperation) <= 1.5) }
        // MSI-X: no cause register to read. Transmit completions interrupt only when the driver
        // must wait for ring space (the I/O thread may lag behind it), never once per frame.
        if id.hasPrefix("net.tx-1500-irq") { #expect(try #require(exits.interrupts) * 4 < exits.operations, "\(exits)") }
        let byEventFD = try #require(exits.interruptsByEventFD, "\(exits)")
        // A response or completion interrupts when the driver is still waiting for it; one the
        // I/O thread finished before the driver looked (it polls) needs none, and the event index
        // lets the driver say so by moving used_event past it first. So only bounds hold here
        // (the emulator's tests count exactly): the guest's handlers (not KVM's statistic, which
        // is off by a few either way on the AMD host) took some, never more than were sent.
        if id == "net.rr-irq" || id.hasPrefix("disk") && id.hasSuffix("-irq") || id.hasSuffix("-intx") {
            let counted = try #require(result.guestInterrupts)
            #expect(counted.taken - counted.spurious > 0 && counted.taken <= 2 * exits.operations + 2, "\(counted) \(exits)")
            if id.hasSuffix("-intx") {
                // MSI-X off: INTA# through the IOAPIC, no messages, and the handler reads the ISR
                // (which clears it and drops the line) for each delivery, spurious ones included.
                #expect(try #require(exits.interruptCauseReads) >= counted.taken, "\(exits)")
                #expect(byEventFD == 0, "\(exits)")
                return
            }
            #expect(exits.interruptCauseReads == 0, "\(exits)")
            #expect(byEventFD > 0 && counted.taken <= byEventFD, "MSI-X messages are irqfd writes: \(counted) \(exits)")
        } else if id.contains("-irq") {
            #expect(exits.interruptCauseReads == 0, "\(exits)")
        } else {
            #expect(byEventFD == 0, "polling drivers leave MSI-X vectors unprogrammed: \(exits)")
        }
    }

    /// The I/O thread's adaptive polling: with `--io-poll-us 0` it never polls; with a window of
    /// a millisecond (far longer than a round trip on any host) it keeps polling through the run,
    /// looking at the queues itself with the doorbells off, and the guest's driver (which reads
    /// VIRTQ_USED_F_NO_NOTIFY, as Linux's does) leaves most of them unrung.
    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage), arguments: [0, 1000] as [UInt64])
    func theIOThreadPollsOnlyWithinItsLimit(_ microseconds: UInt64) async throws {
        let result = try await run("net.rr", on: .paravirtIO, pollMicroseconds: microseconds)
        #expect(result.status == .ok, "\(result.reason ?? "")")
        let exits = try #require(result.exits)
        let polled = try #require(exits.ioThreadPolledNotifications, "\(exits)")
        if microseconds == 0 {
            #expect(polled == 0)
            #expect(exits.notifications >= exits.operations, "a doorbell for every request: \(exits)")
        } else {
            // (Run alone, as scripts/test runs the suite, nearly every doorbell is saved; only the
            // bound is checked, since a starved vCPU can leave more than 1 ms between requests.)
            #expect(polled > 0, "\(exits)")
            #expect(exits.notifications < exits.operations, "doorbells off while the thread polls: \(exits)")
        }
    }

    /// `--no-io-thread`: every doorbell is an MMIO exit handled on the vCPU thread.
    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage), arguments: ["net.tx-1500-irq", "disk.rand-read-4k"])
    func virtioDoorbellsAsExitsWithoutTheIOThread(_ id: String) async throws {
        let result = try await run(id, on: .paravirtIO, ioThread: false)
        #expect(result.status == .ok, "\(id): \(result.reason ?? "")")
        let exits = try #require(result.exits)
        #expect(exits.ioThreadNotifications == nil, "\(exits)")
        #expect(exits.notifications > 0 && exits.mmio >= exits.notifications, "\(exits)")
    }

    @Test(arguments: ioBenchmarks)
    func nativeEquivalents(_ id: String) async throws {
        let result = try await run(id, on: .native)
        if id.contains("-irq") {  // the native peer is in-process: no device, no interrupts
            #expect(result.status == .skipped && result.reason == "native-io-has-no-device-of-ours-to-interrupt")
            return
        }
        #expect(result.status == .ok, "\(id): \(result.reason ?? "")")
        #expect(result.privilege == "host-user")
    }

    @Test func corruptedWritesAreCaught() throws {
        let path = temporaryDirectory().path + ".img"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let disk = try DiskImage.create(path: path, size: 1 << 20)
        try DiskPattern.prepare(disk, sectors: 256)
        guard case .success(let untouched) = try DiskPattern.verify(disk, sectors: 256) else {
            Issue.record("prepared image fails"); return
        }
        #expect(untouched == 0)
        try [UInt8](repeating: 0x5A, count: 8).withUnsafeBytes { try disk.write(from: $0, at: 512 * 17 + 40) }
        guard case .failure(let problem) = try DiskPattern.verify(disk, sectors: 256) else {
            Issue.record("corruption not caught"); return
        }
        #expect(problem.description.contains("sector 17"))
    }
}

/// The guest's drivers against QEMU's own device models (-M pc).
@Suite(.serialized) struct QEMUDriverTests {
    static var accelerator: [String] { Host.hasKVM ? ["-accel", "kvm", "-cpu", "host,-arch-capabilities"] : ["-accel", "tcg"] }

    func boot(_ commandLine: String, devices: [String]) async throws -> BenchmarkTranscript {
        let artifacts = try await Built.artifacts.value
        let arguments =
            ["-M", "pc"] + Self.accelerator + [
                "-m", "256", "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio", "-monitor", "none", "-device",
                "isa-debug-exit,iobase=0xf4", "-kernel", artifacts.guestImage.path, "-append", commandLine,
            ] + devices
        let output = try await ProcessRunner.run(Host.qemu!, arguments, timeout: 180)
        let bench = String(commandLine.split(separator: " ")[0].dropFirst(6))
        let transcript = try BenchmarkTranscript.parse(console: output.standardOutput.joined(separator: "\n"), bench: bench)
        #expect(
            output.exitCode == 1,
            "QEMU \(output.statusDescription): \(output.standardOutput.suffix(3)) \(output.standardError.prefix(300))")
        return transcript
    }

    @Test(.enabled(if: Host.qemu != nil, Host.qemuSkipMessage), arguments: ["e1000", "virtio-net-pci"])
    func networkDrivers(_ device: String) async throws {
        let nic = device == "e1000" ? "e1000" : "virtio"
        let port = Int.random(in: 20000..<60000)
        let netdev = [
            "-netdev", "socket,id=n0,udp=127.0.0.1:\(port),localaddr=127.0.0.1:\(port)", "-device", "\(device),netdev=n0",
        ]
        for bench in ["net.tx-1500", "net.rr", "net.tx-1500-irq", "net.rr-irq", "net.tx-1500-irq-moderated", "net.rr-irq-intx"] {
            let transcript = try await boot("bench=\(bench) iterations=20 repetitions=2 warmups=0 nic=\(nic)", devices: netdev)
            #expect(transcript.status == .ok, "\(device) \(bench): \(transcript.status)")
            #expect(transcript.samples.count == 2)
            // The interrupt-driven variants say how many device interrupts QEMU delivered.
            if bench.contains("-irq") { #expect(transcript.interrupts != nil, "\(device) \(bench)") }
            if bench.hasPrefix("net.rr-irq") {
                #expect((transcript.interrupts?.taken ?? 0) >= 40, "\(device) \(bench): one per response")
            }
        }
    }

    @Test(.enabled(if: Host.qemu != nil, Host.qemuSkipMessage), arguments: ["ide", "virtio"])
    func diskDrivers(_ kind: String) async throws {
        let path = temporaryDirectory().path + ".img"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let disk = try DiskImage.create(path: path, size: 16 << 20)
        try DiskPattern.prepare(disk, sectors: 4096)
        let drive =
            kind == "ide"
            ? ["-drive", "file=\(path),if=ide,format=raw"]
            : ["-drive", "file=\(path),if=none,id=d0,format=raw", "-device", "virtio-blk-pci,drive=d0"]
        // Reads first: they check the prepared pattern, which the write benchmark replaces.
        for bench in ["disk.rand-read-4k", "disk.rand-read-4k-irq", "disk.rand-write-4k"] {
            let transcript = try await boot(
                "bench=\(bench) iterations=4 repetitions=2 warmups=0 disk=\(kind) region_sectors=4096", devices: drive)
            #expect(transcript.status == .ok, "\(kind) \(bench): \(transcript.status)")
        }
        guard case .success(let written) = try DiskPattern.verify(disk, sectors: 4096) else {
            Issue.record("QEMU wrote bad data"); return
        }
        #expect(written > 0)
    }
}
