import Foundation

/// An Intel 82540EM (e1000) subset: CTRL/STATUS, the EEPROM (MAC and checksum) through EERD and
/// bit by bit through EECD, the PHY through MDIC (E1000Management.swift), RAL/RAH, RCTL/TCTL,
/// the statistics registers (clear on read; packets and octets counted), the legacy receive
/// ring (the FCS left on unless RCTL.SECRC), the legacy and extended transmit descriptors with
/// checksum offload and TCP segmentation (E1000TransmitOffload.swift), and interrupts as the
/// 82540EM raises them: causes latch in ICR (TXDW when a descriptor asking for status is written
/// back, TXQE when the transmit ring runs empty, RXT0 per received frame), INTA# is asserted
/// while ICR & IMS is non-zero, and reading ICR clears it — the register read per interrupt that
/// an emulated NIC's driver cannot avoid. ITR throttles them as the 82540EM does: INTA# rises
/// no sooner than ITR × 256 ns after it last rose, causes meanwhile accumulating in ICR (a
/// device timer raises it when the interval ends). Where the engine buffers MMIO writes (KVM's
/// coalesced MMIO), writes to registers nothing waits on — ring bases and lengths, addresses,
/// ITR, EERD — cost no exit, as with QEMU's e1000; doorbells, interrupt registers, resets and
/// the receive control, whose effect a driver may wait on without another exit, are left out.
public final class E1000: PCIFunction, BusDevice {
    public static let barSize: UInt32 = 0x20000
    enum Register {
        static let ctrl = 0x0000, status = 0x0008, eecd = 0x0010, eerd = 0x0014, mdic = 0x0020
        static let icr = 0x00C0, itr = 0x00C4, ics = 0x00C8, ims = 0x00D0, imc = 0x00D8
        static let rctl = 0x0100, tctl = 0x0400
        static let rdbal = 0x2800, rdbah = 0x2804, rdlen = 0x2808, rdh = 0x2810, rdt = 0x2818
        static let tdbal = 0x3800, tdbah = 0x3804, tdlen = 0x3808, tdh = 0x3810, tdt = 0x3818
        static let ral0 = 0x5400, rah0 = 0x5404
        /// The statistics registers, cleared when read; those counted here are below.
        static let statistics = 0x4000..<0x4100
        static let goodPacketsReceived = 0x4074, goodPacketsTransmitted = 0x4080
        static let goodOctetsReceived = 0x4088, goodOctetsTransmitted = 0x4090  // low; high at +4
        static let totalPacketsReceived = 0x40D0, totalPacketsTransmitted = 0x40D4
    }

    public let configuration = PCIConfiguration(
        vendor: 0x8086, device: 0x100E, classCode: 0x02, subclass: 0x00, subsystemVendor: 0x8086, subsystem: 0x001E, revision: 3,
        barSizes: [barSize])
    public let memory: GuestMemory
    /// Where frames go and come from: the in-VMM peer or a TAP device.
    public let peer: any NetworkBackend
    public let mac: [UInt8]
    private var bar: MemoryBAR
    /// Where the engine buffers writes, and the ranges of this BAR it buffers now.
    private var coalescer: (any WriteCoalescer)?
    private var coalescedRanges: [any CoalescedRange] = []
    /// Interrupt throttling (ITR): when INTA# last rose, and the timer that raises it when the
    /// interval since then ends.
    private var timers: DeviceTimers?
    private var lastAssertion: UInt64?
    private var throttleTimer: DeviceTimers.Timer?
    /// Interrupts ITR held back until its interval ended.
    public private(set) var throttledInterrupts = 0
    private var registers = [UInt32](repeating: 0, count: Int(barSize) / 4)
    private var eeprom = [UInt16](repeating: 0, count: 64)
    private var microwire = MicrowireEEPROM(words: [UInt16](repeating: 0, count: 64))
    private var phy = E1000PHY()
    /// The last context descriptor, and the offloads the first data descriptor of the packet
    /// being gathered asked for.
    private var transmitContext = E1000TransmitContext()
    private var packetOffloads: (ip: Bool, transport: Bool, segment: Bool)?
    /// A packet up to 64 KiB (what TCP segmentation hands the device).
    private var frame = [UInt8](repeating: 0, count: 65536 + 4096)
    private var frameLength = 0
    public private(set) var brokenReason: String?
    /// Writes to the transmit and receive tail registers: the doorbells of this device.
    public private(set) var doorbells = 0
    /// ICR reads: each one an exit under KVM, one per interrupt for an interrupt-driven driver.
    public private(set) var interruptCauseReads = 0
    /// Serialises the vCPU thread's register accesses with a TAP reader thread filling the
    /// receive ring (recursive: a reset comes from a register write and from the PCI side).
    private let lock = NSRecursiveLock()
    /// Whether frames that arrive on their own may be taken on the backend's thread: under KVM,
    /// where an I/O thread means interrupts may be raised from any thread; the emulator takes
    /// device work on its vCPU thread only.
    private var takesFramesOffTheVCPUThread = false

    enum Cause {
        static let transmitWrittenBack: UInt32 = 0x01  // TXDW
        static let transmitQueueEmpty: UInt32 = 0x02  // TXQE
        static let receiveTimer: UInt32 = 0x80  // RXT0
    }

    public init(memory: GuestMemory, mmio: IOBus, peer: any NetworkBackend, mac: [UInt8] = [0x52, 0x54, 0x00, 0x68, 0x76, 0x02]) {
        self.memory = memory
        self.bar = MemoryBAR(bus: mmio, length: UInt64(Self.barSize))
        self.peer = peer
        self.mac = mac
        for word in 0..<3 { eeprom[word] = UInt16(mac[2 * word]) | UInt16(mac[2 * word + 1]) << 8 }
        // Word 0x3F makes the first 64 words sum to 0xBABA, which drivers check.
        let sum = eeprom[0..<63].reduce(UInt16(0)) { $0 &+ $1 }
        eeprom[63] = 0xBABA &- sum
        reset()
    }

    public func reset() {
        lock.lock()
        defer { lock.unlock() }
        brokenReason = nil  // a reset is how a driver recovers the device
        for index in registers.indices { registers[index] = 0 }
        registers[Register.status / 4] = 0x0000_0083  // full duplex, link up, 1000 Mb/s
        microwire = MicrowireEEPROM(words: eeprom)
        phy.reset()
        transmitContext = E1000TransmitContext()
        packetOffloads = nil
        registers[Register.ral0 / 4] = UInt32(mac[0]) | UInt32(mac[1]) << 8 | UInt32(mac[2]) << 16 | UInt32(mac[3]) << 24
        registers[Register.rah0 / 4] = UInt32(mac[4]) | UInt32(mac[5]) << 8 | 0x8000_0000
        frameLength = 0
        if let throttleTimer { timers?.cancel(throttleTimer) }
        throttleTimer = nil
        lastAssertion = nil
        updateInterrupt()
    }

    /// INTA# follows ICR & IMS, but rises no sooner than the ITR interval after it last rose.
    private func updateInterrupt() {
        let pending = registers[Register.icr / 4] & registers[Register.ims / 4] != 0
        guard pending, !configuration.interruptRequested else {
            if !pending { configuration.requestInterrupt(false) }
            return
        }
        let interval = UInt64(registers[Register.itr / 4] & 0xFFFF) * 256
        let now = timers?.now()
        if interval > 0, let timers, let now, let last = lastAssertion, now < last + interval {
            if throttleTimer == nil {
                throttledInterrupts += 1
                throttleTimer = timers.schedule(at: last + interval) { [unowned self] in
                    lock.withLock {
                        throttleTimer = nil
                        updateInterrupt()
                    }
                }
            }
            return
        }
        lastAssertion = now
        configuration.requestInterrupt(true)
    }

    private func raise(_ causes: UInt32) {
        registers[Register.icr / 4] |= causes
        updateInterrupt()
    }

    public func barMoved(_ index: Int, to address: UInt64?) {
        guard index == 0 else { return }
        bar.move(self, to: address)
        for range in coalescedRanges { range.cancel() }
        coalescedRanges = []
        guard let coalescer, let base = bar.address else { return }
        coalescedRanges = Self.coalescedRegisterRanges.compactMap {
            coalescer.coalesce(address: base + $0.lowerBound, length: UInt64($0.count))
        }
    }

    /// Every register except those a driver may wait on without another exit: a reset (CTRL),
    /// the interrupt registers (ICR, ICS, IMS, IMC: they move INTA#), RCTL (it starts
    /// reception) and the tail doorbells. A receive tail is left out although QEMU buffers it:
    /// a polling driver posts buffers and then watches memory, and the next exit might never
    /// come.
    static let coalescedRegisterRanges = rangesBetween(
        excludedRegisters: [
            Register.ctrl, Register.icr, Register.ics, Register.ims, Register.imc, Register.rctl, Register.rdt, Register.tdt,
        ]
        .map(UInt64.init),
        blockLength: UInt64(barSize))

    private func fail(_ reason: String) {
        if brokenReason == nil { brokenReason = reason }
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        lock.lock()
        defer { lock.unlock() }
        let register = Int(offset) & ~3
        var value = registers[register / 4]
        if register == Register.icr {  // read to clear, which drops INTA#
            registers[register / 4] = 0
            interruptCauseReads += 1
            updateInterrupt()
        } else if register == Register.eecd {
            value = microwire.eecd
        } else if Register.statistics.contains(register) {
            registers[register / 4] = 0  // statistics clear when read
        }
        value >>= 8 * UInt32(offset & 3)
        data.storeLittleEndian(UInt64(value))
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        lock.lock()
        defer { lock.unlock() }
        let register = Int(offset) & ~3
        let value = UInt32(truncatingIfNeeded: data.littleEndianValue)
        switch register {
        case Register.ctrl:
            if value & (1 << 26) != 0 { reset() } else { registers[register / 4] = value }
        case Register.status, Register.icr: break  // read-only / read-to-clear
        case Register.eecd: microwire.write(value)
        case Register.mdic: registers[register / 4] = phy.access(value)
        case Register.eerd:
            if value & 1 != 0 {
                let address = Int((value >> 8) & 0xFF)
                let word = address < eeprom.count ? eeprom[address] : 0xFFFF
                registers[register / 4] = UInt32(word) << 16 | UInt32(address) << 8 | 0x10  // DONE
            }
        case Register.ims:
            registers[register / 4] |= value
            updateInterrupt()
        case Register.imc:
            registers[Register.ims / 4] &= ~value
            updateInterrupt()
        case Register.ics: raise(value)
        case Register.rctl:
            registers[register / 4] = value
            receive()  // enabling the receiver starts filling buffers already posted
        case Register.tdt:
            registers[register / 4] = value & 0xFFFF
            doorbells += 1
            transmit()
        case Register.rdt:
            registers[register / 4] = value & 0xFFFF
            doorbells += 1
            receive()
        default:
            registers[register / 4] = value
        }
    }

    /// A ring the device may work on now: enabled, DMA allowed, set up, with head and tail inside
    /// it (otherwise the device is marked broken). Register offsets are the ring's base-low, its
    /// base-high, length, head and tail.
    private func activeRing(_ name: String, enabledBy control: Int, registers ring: (Int, Int, Int, Int, Int)) -> (
        base: UInt64, count: UInt32, head: UInt32, tail: UInt32
    )? {
        guard brokenReason == nil, registers[control / 4] & 2 != 0, configuration.busMasterEnabled else { return nil }
        let base = UInt64(registers[ring.0 / 4]) | UInt64(registers[ring.1 / 4]) << 32
        let count = registers[ring.2 / 4] / 16
        guard count > 0 else { return nil }
        let head = registers[ring.3 / 4]
        let tail = registers[ring.4 / 4]
        guard head < count, tail < count else {
            fail("\(name) head \(head) or tail \(tail) outside a ring of \(count)")
            return nil
        }
        return (base, count, head, tail)
    }

    /// The 16-byte descriptor `index` of a ring, checked to lie in guest RAM: the ring base is
    /// guest-written and may sit anywhere in the 64-bit space.
    private func descriptor(_ base: UInt64, _ index: UInt32) throws -> UnsafeMutableRawBufferPointer {
        let (address, overflow) = base.addingReportingOverflow(16 * UInt64(index))
        guard !overflow else { throw GuestMemoryError.outOfRange(address: base, length: 16, size: memory.size) }
        return try memory.bytes(at: address, count: 16)
    }

    /// Sends every descriptor between head and tail: legacy descriptors and extended data
    /// descriptors gather a packet until EOP, a context descriptor sets the offloads' offsets;
    /// RS asks for the DD bit.
    private func transmit() {
        guard
            let (base, count, start, tail) = activeRing(
                "transmit", enabledBy: Register.tctl,
                registers: (Register.tdbal, Register.tdbah, Register.tdlen, Register.tdh, Register.tdt))
        else { return }
        var head = start
        var causes: UInt32 = 0
        defer { if causes != 0 { raise(causes) } }
        do {
            while head != tail {
                let entry = try descriptor(base, head)
                let command = entry[11]
                let extended = command & 0x20 != 0  // DEXT
                let type = extended ? (entry[10] >> 4) & 0xF : 0
                if extended && type == 0 {
                    transmitContext = E1000TransmitContext(descriptor: UnsafeRawBufferPointer(entry))
                } else {
                    guard !extended || type == 1 else { return fail("transmit descriptor of unknown type \(type)") }
                    let address = UInt64(littleEndian: entry.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
                    // Legacy: a 16-bit length; extended data: 20 bits.
                    let length =
                        extended
                        ? Int(UInt32(littleEndian: entry.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) & 0xF_FFFF)
                        : Int(UInt16(littleEndian: entry.loadUnaligned(fromByteOffset: 8, as: UInt16.self)))
                    if packetOffloads == nil {
                        let options = extended ? entry[13] : 0  // POPTS: IXSM, TXSM
                        packetOffloads = (options & 0x01 != 0, options & 0x02 != 0, extended && command & 0x04 != 0)
                    }
                    guard frameLength + length <= frame.count else {
                        return fail("transmit packet longer than \(frame.count) bytes")
                    }
                    let source = try memory.bytes(at: address, count: length)
                    frame.withUnsafeMutableBytes {
                        $0.baseAddress!.advanced(by: frameLength).copyMemory(from: source.baseAddress!, byteCount: length)
                    }
                    frameLength += length
                    if command & 0x01 != 0 {  // EOP
                        guard send() else { return }
                    }
                }
                if command & 0x08 != 0 {  // RS: write back DD
                    entry[12] = 0x01
                    causes |= Cause.transmitWrittenBack
                }
                head = (head + 1) % count
                registers[Register.tdh / 4] = head
            }
            if head != start { causes |= Cause.transmitQueueEmpty }
        } catch {
            fail("transmit descriptor ring: \(error)")
        }
        receive()
    }

    /// Hands the gathered packet to the peer: as it is, or with the checksums and segmentation
    /// its descriptors asked for. False when the packet's offloads could not be done (the
    /// device is then broken).
    private func send() -> Bool {
        defer {
            frameLength = 0
            packetOffloads = nil
        }
        guard let offloads = packetOffloads, offloads.ip || offloads.transport || offloads.segment else {
            frame.withUnsafeBytes { peer.received(UnsafeRawBufferPointer(rebasing: $0[0..<frameLength])) }
            countTransmitted(frameLength)
            return true
        }
        do {
            for packet in try transmitContext.frames(
                for: Array(frame[0..<frameLength]), ipChecksum: offloads.ip, transportChecksum: offloads.transport,
                segment: offloads.segment)
            {
                packet.withUnsafeBytes { peer.received($0) }
                countTransmitted(packet.count)
            }
            return true
        } catch {
            fail("transmit offload: \(error)")
            return false
        }
    }

    /// Counts a frame of `bytes` (without its FCS) in the statistics registers: good and total
    /// packets, and the good octets with the FCS, as the 82540EM counts them, in a 64-bit
    /// counter held in a low and a high register.
    private func countFrame(_ bytes: Int, good: Int, total: Int, octets low: Int) {
        registers[good / 4] &+= 1
        registers[total / 4] &+= 1
        let sum = (UInt64(registers[low / 4 + 1]) << 32 | UInt64(registers[low / 4])) &+ UInt64(bytes + 4)
        registers[low / 4] = UInt32(truncatingIfNeeded: sum)
        registers[low / 4 + 1] = UInt32(truncatingIfNeeded: sum >> 32)
    }

    private func countTransmitted(_ bytes: Int) {
        countFrame(
            bytes, good: Register.goodPacketsTransmitted, total: Register.totalPacketsTransmitted,
            octets: Register.goodOctetsTransmitted)
    }

    /// Fills free receive descriptors (head up to tail) with frames the peer has for the guest.
    private func receive() {
        guard
            let (base, count, start, tail) = activeRing(
                "receive", enabledBy: Register.rctl,
                registers: (Register.rdbal, Register.rdbah, Register.rdlen, Register.rdh, Register.rdt))
        else { return }
        var head = start
        let bufferSize = [2048, 1024, 512, 256][Int((registers[Register.rctl / 4] >> 16) & 3)]
        do {
            while head != tail, peer.hasFrameForGuest {
                let entry = try descriptor(base, head)
                let address = UInt64(littleEndian: entry.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
                let buffer = try memory.bytes(at: address, count: bufferSize)
                guard var length = peer.frameForGuest(into: buffer) else {
                    return fail("receive buffer of \(bufferSize) bytes too small")
                }
                countFrame(
                    length, good: Register.goodPacketsReceived, total: Register.totalPacketsReceived,
                    octets: Register.goodOctetsReceived)
                // The frame check sequence stays on the frame unless RCTL.SECRC strips it.
                if registers[Register.rctl / 4] & (1 << 26) == 0 && length + 4 <= bufferSize {
                    let fcs = EthernetFCS.of(UnsafeRawBufferPointer(rebasing: buffer[0..<length]))
                    buffer.storeBytes(of: fcs.littleEndian, toByteOffset: length, as: UInt32.self)
                    length += 4
                }
                entry.storeBytes(of: UInt16(length).littleEndian, toByteOffset: 8, as: UInt16.self)
                entry[12] = 0x03  // DD | EOP
                head = (head + 1) % count
                registers[Register.rdh / 4] = head
                registers[Register.icr / 4] |= Cause.receiveTimer
            }
        } catch {
            fail("receive descriptor ring: \(error)")
        }
        updateInterrupt()
    }
}

extension E1000: Device {
    public var name: String { "e1000" }
    public func attach(to platform: Platform) throws {
        coalescer = platform.coalescedWrites
        timers = platform.timers
        takesFramesOffTheVCPUThread = platform.doorbells != nil
        // Frames that arrive on their own (a TAP) are taken as if the guest had just returned
        // receive descriptors: under KVM at once, on the backend's thread, so a polling guest
        // sees them without a vCPU exit (as QEMU's main loop fills the ring); otherwise, and
        // while ITR throttles (its timers belong to the vCPU thread), on the vCPU thread.
        let device = UncheckedReference(self)
        let timers = platform.timers
        peer.onArrival {
            let e1000 = device.value
            let taken = e1000.lock.withLock {
                guard e1000.takesFramesOffTheVCPUThread, e1000.registers[Register.itr / 4] & 0xFFFF == 0 else {
                    return false
                }
                e1000.receive()
                return true
            }
            if !taken { timers.post { device.value.lock.withLock { device.value.receive() } } }
        }
        try platform.pci().plug(self)
    }
}
