import Foundation
import Testing

@testable import Machine

@Suite struct SerialTests {
    func write(_ uart: Serial16550, _ offset: UInt64, _ value: UInt8) {
        [value].withUnsafeBytes { uart.write(offset: offset, from: $0) }
    }
    func read(_ uart: Serial16550, _ offset: UInt64) -> UInt8 {
        var value: [UInt8] = [0]
        value.withUnsafeMutableBytes { uart.read(offset: offset, into: $0) }
        return value[0]
    }

    @Test func transmitsWhatIsWrittenToTHR() {
        var sent: [UInt8] = []
        let uart = Serial16550 { sent.append($0) }
        for byte in "ok\n".utf8 { write(uart, 0, byte) }
        #expect(sent == Array("ok\n".utf8))
    }

    @Test func lineStatusSaysTransmitterEmptyAndNoData() {
        let uart = Serial16550 { _ in }
        #expect(read(uart, 5) & 0x60 == 0x60)
        #expect(read(uart, 5) & 0x01 == 0)
    }

    @Test func divisorLatchIsSelectedByDLAB() {
        var sent: [UInt8] = []
        let uart = Serial16550 { sent.append($0) }
        write(uart, 3, 0x83)  // DLAB=1, 8N1
        write(uart, 0, 0x01)  // divisor low: not transmitted
        write(uart, 1, 0x00)
        #expect(read(uart, 0) == 0x01)
        write(uart, 3, 0x03)  // DLAB=0
        #expect(read(uart, 3) == 0x03)
        write(uart, 0, 0x41)
        #expect(sent == [0x41])
    }

    /// Linux's tty layer sends through the transmitter-empty interrupt (the kernel's own console
    /// polls): it must arrive on IRQ 4 when enabled with OUT2, go away when IIR reports it, and
    /// come back as a new edge after each character.
    @Test func transmitterEmptyInterruptReachesIRQ4AsTheDatasheetSays() {
        let controller = InterruptRecorder()
        let uart = Serial16550(transmit: { _ in }, interruptLine: InterruptLine(gsi: 4, controller: controller))
        write(uart, 1, 0x02)  // IER.ETBEI with THR empty: pending, but OUT2 is off
        #expect(controller.levels[4] != true, "MCR.OUT2 gates the line")
        write(uart, 4, 0x08)  // OUT2
        #expect(controller.levels[4] == true)
        #expect(read(uart, 2) & 0x0F == 0x02, "IIR: transmitter empty")
        #expect(controller.levels[4] == false, "reading IIR cleared it")
        #expect(read(uart, 2) & 0x0F == 0x01, "IIR: nothing pending")
        write(uart, 0, 0x41)
        write(uart, 0, 0x42)
        #expect(controller.assertions[4] == 3, "one edge on enabling, one per character")
        write(uart, 1, 0x00)
        #expect(controller.levels[4] == false && read(uart, 2) & 0x0F == 0x01, "disabled: no interrupt")
    }

    @Test func scratchRegisterHoldsItsValue() {
        let uart = Serial16550 { _ in }
        write(uart, 7, 0x5A)
        #expect(read(uart, 7) == 0x5A)
    }
}

@Suite struct SmallDeviceTests {
    @Test func debugExitUsesQEMUsStatusConvention() {
        var statuses: [Int32] = []
        let device = DebugExitDevice { statuses.append($0) }
        [UInt8(0)].withUnsafeBytes { device.write(offset: 0, from: $0) }
        [UInt8(0x7F)].withUnsafeBytes { device.write(offset: 0, from: $0) }
        #expect(statuses == [1, 255])
        #expect(DebugExitDevice.exitStatus(forValue: 2) == 5)
    }

    /// A kernel that panics with panic=-1 reboots through the keyboard controller: the VM ends
    /// with that reason instead of running the reset vector's garbage.
    @Test func keyboardControllerResetCommandEndsTheMachine() {
        var resets = 0
        let controller = KeyboardControllerReset { resets += 1 }
        var status: [UInt8] = [0xFF]
        status.withUnsafeMutableBytes { controller.read(offset: 0, into: $0) }
        #expect(status[0] & 0x02 == 0, "input buffer empty: a waiting guest goes on")
        [UInt8(0xAD)].withUnsafeBytes { controller.write(offset: 0, from: $0) }  // disable keyboard: ignored
        #expect(resets == 0)
        [UInt8(0xFE)].withUnsafeBytes { controller.write(offset: 0, from: $0) }
        #expect(resets == 1)
    }

    @Test func milestonesAreTimestampedInOrderAndBounded() {
        let device = BootMilestoneDevice()
        for code in [UInt8(1), 2, 3] { [code].withUnsafeBytes { device.write(offset: 0, from: $0) } }
        #expect(device.milestones.map(\.code) == [1, 2, 3])
        #expect(device.milestones[0].nanoseconds <= device.milestones[2].nanoseconds)
        for _ in 0..<2000 { [UInt8(9)].withUnsafeBytes { device.write(offset: 0, from: $0) } }
        #expect(device.milestones.count == BootMilestoneDevice.capacity)
        #expect(device.milestones.allSatisfy { $0.residentBytes == nil }, "boot codes are not residency probes")
        // A residency probe counts what the host holds, through the VM's counter.
        let probed = BootMilestoneDevice()
        probed.residentBytes = { 12_288 }
        for code in [UInt8(3), 0x40, 0x41] { [code].withUnsafeBytes { probed.write(offset: 0, from: $0) } }
        #expect(probed.milestones.map(\.residentBytes) == [nil, 12_288, 12_288])
    }
}

/// The one protocol every device model conforms to: it places itself on a platform, names
/// itself in reports, and `reset()` returns it to its power-on state, healed.
@Suite struct DeviceProtocolTests {
    @Test func devicesPlaceThemselvesNameThemselvesAndResetHeals() throws {
        let memory = try GuestMemory(size: 1 << 20)
        let ports = IOBus()
        let mmio = IOBus()
        let platform = Platform(memory: memory, portBus: ports, mmioBus: mmio)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("device-\(UUID().uuidString).img").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let nic = E1000(memory: memory, mmio: mmio, peer: NetworkPeer(mode: .sink))
        let ide = IDEDisk(disk: try DiskImage.create(path: path, size: 1 << 20))
        let virtioNet = VirtioPCITransport(model: VirtioNet(peer: NetworkPeer(mode: .sink)), memory: memory, mmio: mmio)
        let devices: [any Device] = [nic, ide, virtioNet]
        for device in devices { try device.attach(to: platform) }
        #expect(devices.map(\.name) == ["e1000", "ide", "virtio-net"])
        write(ports, 0xCF8, 0x8000_0000 | 1 << 11)
        #expect(read(ports, 0xCFC) == 0x100E_8086, "the e1000 plugged itself into slot 1")
        write(ide.commandBlock, 7, 0x99, width: 1)  // an unknown command: the disk reports an error
        #expect(read(ide.commandBlock, 7, width: 1) & 0x01 != 0)
        ide.reset()
        #expect(read(ide.commandBlock, 7, width: 1) & 0x01 == 0)
        // Break the NIC with a ring outside RAM, then reset it.
        _ = nic.configuration.write(offset: 4, count: 2, value: 0x6)
        write(nic, 0x3800, 0xF000_0000)
        write(nic, 0x3808, 16 * 8)
        write(nic, 0x0400, 0x2)
        write(nic, 0x3818, 1)
        #expect(nic.brokenReason != nil)
        nic.reset()
        #expect(nic.brokenReason == nil)
    }
}

/// Records what a device asks the engine to buffer, and buffers writes as KVM's ring does.
private final class RecordingCoalescer: WriteCoalescer {
    final class Zone: CoalescedRange {
        let range: Range<UInt64>
        var cancelled = false
        init(_ range: Range<UInt64>) { self.range = range }
        func cancel() { cancelled = true }
    }
    var zones: [Zone] = []
    var live: [Range<UInt64>] { zones.filter { !$0.cancelled }.map(\.range) }
    func coalesce(address: UInt64, length: UInt64) -> (any CoalescedRange)? {
        let zone = Zone(address..<address + length)
        zones.append(zone)
        return zone
    }
    func drain(_ write: (UInt64, UnsafeRawBufferPointer) -> Void) -> Int { 0 }
}

@Suite struct CoalescedWriteTests {
    @Test func rangesLeaveOutTheExcludedRegisters() {
        #expect(rangesBetween(excludedRegisters: [0, 8, 12, 40], blockLength: 32) == [4..<8, 16..<32])
        #expect(rangesBetween(excludedRegisters: [], blockLength: 16) == [0..<16])
    }

    /// The e1000 asks for its configuration registers to be buffered, never for a register a
    /// driver may wait on, and the ranges follow its BAR.
    @Test func e1000CoalescesOnlyRegistersNothingWaitsOnAndFollowsItsBAR() throws {
        let memory = try GuestMemory(size: 1 << 20)
        let ports = IOBus()
        let mmio = IOBus()
        let coalescer = RecordingCoalescer()
        let platform = Platform(memory: memory, portBus: ports, mmioBus: mmio, coalescedWrites: coalescer)
        let nic = E1000(memory: memory, mmio: mmio, peer: NetworkPeer(mode: .sink))
        try nic.attach(to: platform)
        func configure(_ register: UInt64, _ value: UInt64) {
            write(ports, 0xCF8, 0x8000_0000 | 1 << 11 | register)
            write(ports, 0xCFC, value)
        }
        configure(0x10, 0xE000_0000)
        #expect(coalescer.live.isEmpty, "memory decoding is off: nothing to buffer")
        configure(0x04, 0x6)
        let base: UInt64 = 0xE000_0000
        #expect(coalescer.live.first?.lowerBound == base + 4 && coalescer.live.last?.upperBound == base + 0x20000)
        for register: UInt64 in [0x2800, 0x3800, 0x00C4, 0x5400, 0x0014, 0x0400] {  // ring bases, ITR, RAL, EERD, TCTL
            #expect(coalescer.live.contains { $0.contains(base + register) }, "0x\(String(register, radix: 16))")
        }
        for register: UInt64 in [0x0000, 0x00C0, 0x00C8, 0x00D0, 0x00D8, 0x0100, 0x2818, 0x3818] {
            #expect(!coalescer.live.contains { $0.contains(base + register) }, "0x\(String(register, radix: 16))")
        }
        let placed = coalescer.live
        configure(0x10, 0xE004_0000)
        #expect(coalescer.live == placed.map { $0.lowerBound + 0x40000..<$0.upperBound + 0x40000 })
        configure(0x04, 0x4)  // memory decoding off again
        #expect(coalescer.live.isEmpty)
    }
}

private func write(_ bus: IOBus, _ address: UInt64, _ value: UInt64) {
    let bytes = (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    bytes.withUnsafeBytes { _ = bus.write(address, from: $0) }
}
