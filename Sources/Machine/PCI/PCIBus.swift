/// A PCI function as the configuration mechanism sees it: 256 bytes of configuration space and
/// up to six BARs (32-bit memory, or I/O ports), which the guest sizes and places itself.
public protocol PCIFunction: AnyObject {
    var configuration: PCIConfiguration { get }
    /// Called when the guest moves or enables a BAR: the device at `address` (nil = unmapped).
    func barMoved(_ index: Int, to address: UInt64?)
    /// Runs a configuration-space write; a device whose state another thread also touches (an
    /// I/O thread) serialises it with its own lock.
    func configurationAccess(_ body: () -> Void)
}

extension PCIFunction {
    public func configurationAccess(_ body: () -> Void) { body() }
}

/// Configuration space with the semantics guests rely on: read-only identity registers,
/// writable command/BARs, BAR sizing (write all ones, read back the size mask), capabilities.
public final class PCIConfiguration {
    public private(set) var bytes = [UInt8](repeating: 0, count: 256)
    /// Size of each BAR (0 = not implemented).
    public let barSizes: [UInt32]
    /// Which BARs decode I/O ports rather than memory.
    public let ioBARs: Set<Int>
    private var nextCapability: UInt8 = 0x40

    public init(
        vendor: UInt16, device: UInt16, classCode: UInt8, subclass: UInt8, programmingInterface: UInt8 = 0,
        subsystemVendor: UInt16 = 0, subsystem: UInt16 = 0, revision: UInt8 = 0, barSizes: [UInt32] = [],
        ioBARs: Set<Int> = []
    ) {
        precondition(
            barSizes.enumerated().allSatisfy { index, size in
                size == 0 || (size >= (ioBARs.contains(index) ? 4 : 16) && size & (size - 1) == 0)
            }, "BAR sizes are powers of two (>= 16 for memory, >= 4 for I/O)")
        self.barSizes = barSizes + Array(repeating: 0, count: 6 - barSizes.count)
        self.ioBARs = ioBARs
        set16(0x00, vendor)
        set16(0x02, device)
        bytes[0x08] = revision
        bytes[0x09] = programmingInterface
        bytes[0x0A] = subclass
        bytes[0x0B] = classCode
        set16(0x2C, subsystemVendor)
        set16(0x2E, subsystem)
        bytes[0x3D] = 1  // INTA#
        for bar in ioBARs { bytes[0x10 + 4 * bar] = 0x01 }  // "I/O space"
    }

    /// Sets a device-specific register (0x40 and up, outside any capability) to the value the
    /// hardware has at reset; guest writes to it are ignored.
    public func presetDeviceSpecific(_ offset: Int, _ value: UInt8) {
        precondition((0x40...0xFF).contains(offset), "device-specific registers start at 0x40")
        bytes[offset] = value
    }

    // MARK: INTx

    /// The platform input INTA# is wired to; set when the function is plugged.
    public internal(set) var interruptLine: InterruptLine? {
        didSet { bytes[0x3C] = UInt8(truncatingIfNeeded: interruptLine?.gsi ?? 0xFF) }
    }
    /// Whether the device asks for INTA# (what `requestInterrupt` last said).
    public private(set) var interruptRequested = false

    /// The device raises (or drops) INTA#. The line follows unless the driver set Interrupt
    /// Disable in the command register; the status register's Interrupt Status bit shows the
    /// request either way, as PCI 2.3 has it.
    public func requestInterrupt(_ requested: Bool) {
        interruptRequested = requested
        if requested { bytes[0x06] |= 0x08 } else { bytes[0x06] &= ~0x08 }
        interruptLine?.set(requested && !interruptDisabled)
    }

    public var interruptDisabled: Bool { bytes[0x05] & 0x04 != 0 }

    /// For functions that interrupt some other way (the IDE channel's IRQ 14): no INTx pin.
    public func clearInterruptPin() { bytes[0x3D] = 0 }
    /// The platform's interrupt controller, for message-signalled interrupts; set when plugged.
    public internal(set) var interruptController: (any InterruptController)?

    // MARK: Writable capability registers

    /// Bits of capability bytes the guest may write (MSI-X message control), by offset.
    private var writableCapabilityBits: [Int: UInt8] = [:]
    /// Called after the guest wrote any of them, so the capability's owner can act.
    public var capabilityWritten: (() -> Void)?

    public func makeWritable(offset: Int, bits: UInt8) { writableCapabilityBits[offset] = bits }

    func set16(_ offset: Int, _ value: UInt16) {
        bytes[offset] = UInt8(truncatingIfNeeded: value)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
    }

    func value32(_ offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
    }

    /// Appends a capability (its ID, then `body` after the next pointer); returns its offset.
    @discardableResult
    public func addCapability(id: UInt8, body: [UInt8]) -> UInt8 {
        let offset = nextCapability
        precondition(Int(offset) + 2 + body.count <= 256, "configuration space is full")
        bytes[Int(offset)] = id
        bytes[Int(offset) + 1] = 0
        for (index, byte) in body.enumerated() { bytes[Int(offset) + 2 + index] = byte }
        if bytes[0x34] == 0 {
            bytes[0x34] = offset
        } else {
            var cursor = Int(bytes[0x34])
            while bytes[cursor + 1] != 0 { cursor = Int(bytes[cursor + 1]) }
            bytes[cursor + 1] = offset
        }
        bytes[0x06] |= 0x10  // status: capabilities list
        nextCapability = UInt8((Int(offset) + 2 + body.count + 3) & ~3)
        return offset
    }

    public var ioEnabled: Bool { bytes[0x04] & 0x01 != 0 }
    public var memoryEnabled: Bool { bytes[0x04] & 0x02 != 0 }
    public var busMasterEnabled: Bool { bytes[0x04] & 0x04 != 0 }

    /// The guest-assigned address (or port) of a BAR, or nil while unassigned or its kind of
    /// decoding is off.
    public func barAddress(_ index: Int) -> UInt64? {
        guard barSizes[index] > 0 else { return nil }
        let isIO = ioBARs.contains(index)
        guard isIO ? ioEnabled : memoryEnabled else { return nil }
        let address = UInt64(value32(0x10 + 4 * index) & (isIO ? 0xFFFC : ~0xF))
        return address == 0 ? nil : address
    }

    func read(offset: Int, count: Int) -> UInt32 {
        (0..<count).reduce(0) { $0 | UInt32(bytes[(offset + $1) & 0xFF]) << (8 * $1) }
    }

    /// Returns the BARs whose placement may have changed.
    public func write(offset: Int, count: Int, value: UInt32) -> [Int] {
        var touched: Set<Int> = []
        var wroteCapability = false
        for index in 0..<count {
            let position = (offset + index) & 0xFF
            let byte = UInt8(truncatingIfNeeded: value >> (8 * index))
            switch position {
            case 0x04:
                bytes[position] = byte & 0x07  // I/O, memory, bus master
                touched.formUnion(0..<6)
            case 0x05:
                bytes[position] = byte & 0x04  // interrupt disable
                interruptLine?.set(interruptRequested && !interruptDisabled)
            case 0x0C, 0x0D, 0x3C: bytes[position] = byte  // cache line, latency, interrupt line
            case 0x10..<0x28:
                let bar = (position - 0x10) / 4
                let size = barSizes[bar]
                guard size > 0 else { continue }
                // Address bits below the size read as zero; the low bits say "32-bit memory"
                // (0-3) or "I/O space" (bit 0 set), and I/O addresses stop at 64 KiB.
                let isIO = ioBARs.contains(bar)
                let mask = ~(size - 1) & (isIO ? 0xFFFF : 0xFFFF_FFFF)
                let byteInBar = (position - 0x10) % 4
                let maskByte = UInt8(truncatingIfNeeded: mask >> (8 * byteInBar))
                let typeBits: UInt8 = byteInBar == 0 ? (isIO ? 0x01 : 0x00) : 0x00
                bytes[position] = (byte & maskByte & (byteInBar == 0 ? (isIO ? 0xFC : 0xF0) : 0xFF)) | typeBits
                touched.insert(bar)
            default:
                guard let writable = writableCapabilityBits[position] else { break }  // read-only
                bytes[position] = (bytes[position] & ~writable) | (byte & writable)
                wroteCapability = true
            }
        }
        if wroteCapability { capabilityWritten?() }
        return touched.sorted()
    }
}

/// The type-1 configuration mechanism at 0xCF8 (address) / 0xCFC-0xCFF (data), bus 0 only.
/// Slot 0 is a host bridge so that enumeration finds a well-formed bus.
///
/// INTA# of slot n is wired to IOAPIC input 16 + n mod 4 (the usual swizzle onto the four PCI
/// inputs above the ISA ones) and the interrupt line register says so, which is all a driver
/// without ACPI needs; under QEMU's pc machine the firmware writes its own routing there.
public final class PCIBus: BusDevice {
    public static let base: UInt64 = 0xCF8
    public static let firstINTxInput = 16
    private var address: UInt32 = 0
    private var slots: [PCIFunction?] = Array(repeating: nil, count: 32)
    private let mmio: IOBus
    private let interrupts: any InterruptController

    final class HostBridge: PCIFunction {
        let configuration = PCIConfiguration(vendor: 0x8086, device: 0x1237, classCode: 0x06, subclass: 0x00)
        func barMoved(_ index: Int, to address: UInt64?) {}
    }

    public init(mmio: IOBus, interrupts: any InterruptController = InterruptRecorder()) {
        self.mmio = mmio
        self.interrupts = interrupts
        slots[0] = HostBridge()
    }

    /// Plugs `function` into the first free slot and wires its INTA#; returns the slot number.
    @discardableResult
    public func plug(_ function: PCIFunction) -> Int {
        let slot = slots.firstIndex { $0 == nil }!
        slots[slot] = function
        function.configuration.interruptLine = InterruptLine(gsi: Self.firstINTxInput + slot % 4, controller: interrupts)
        function.configuration.interruptController = interrupts
        return slot
    }

    private var selected: PCIFunction? {
        guard address & 0x8000_0000 != 0 else { return nil }
        let bus = (address >> 16) & 0xFF
        let slot = Int((address >> 11) & 0x1F)
        let function = (address >> 8) & 0x7
        guard bus == 0, function == 0 else { return nil }
        return slots[slot]
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        if offset < 4 {
            data.storeLittleEndian(UInt64(address >> (8 * UInt32(offset))))
            return
        }
        guard let function = selected else {
            data.storeLittleEndian(UInt64.max)  // no device: all ones
            return
        }
        let register = Int(address & 0xFC) + Int(offset - 4)
        data.storeLittleEndian(UInt64(function.configuration.read(offset: register, count: data.count)))
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        if offset < 4 {
            if offset == 0 && data.count == 4 { address = UInt32(truncatingIfNeeded: data.littleEndianValue) }
            return
        }
        guard let function = selected else { return }
        let register = Int(address & 0xFC) + Int(offset - 4)
        var moved: [Int] = []
        function.configurationAccess {
            moved = function.configuration.write(
                offset: register, count: data.count, value: UInt32(truncatingIfNeeded: data.littleEndianValue))
        }
        for bar in moved { function.barMoved(bar, to: function.configuration.barAddress(bar)) }
    }
}
