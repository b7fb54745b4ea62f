import Foundation
import Synchronization

/// An I/O APIC with the version 0x20 register set (the one KVM's and QEMU's model, with the
/// directed-EOI register): 24 input pins, each with a 64-bit redirection entry, reached through
/// the index register at +0x00 and the data window at +0x10.
///
/// Used by the emulator engine; under KVM the kernel's IOAPIC plays this part. Edge-triggered
/// pins deliver on a rising edge; level-triggered pins deliver while asserted and set Remote IRR
/// until the local APIC's EOI for their vector comes back (`endOfInterrupt`), then deliver again
/// if the line is still asserted — which is how an unacknowledged device keeps interrupting.
///
/// Thread-safe: devices drive lines under the VM's device lock, but with several emulated vCPUs
/// the EOI comes from the bootstrap processor's thread while another vCPU's exit runs a device.
public final class IOAPIC: BusDevice {
    public static let base: UInt64 = 0xFEC0_0000
    public static let length: UInt64 = 0x100
    public static let pinCount = 24
    static let version: UInt32 = 0x20 | UInt32(pinCount - 1) << 16

    enum Bit {
        static let deliveryStatus: UInt64 = 1 << 12
        static let remoteIRR: UInt64 = 1 << 14
        static let levelTriggered: UInt64 = 1 << 15
        static let masked: UInt64 = 1 << 16
        static let logicalDestination: UInt64 = 1 << 11
        /// What the guest may write in the low word: vector, delivery mode, destination mode,
        /// polarity, trigger mode, mask (delivery status and Remote IRR are the IOAPIC's).
        static let writableLow: UInt64 = 0x1_AFFF
    }

    /// Hands a vector to the local APIC: (vector, level-triggered).
    public typealias Delivery = (UInt8, Bool) -> Void

    private let deliver: Delivery
    private let lock = Mutex(())
    private var selected: UInt32 = 0
    private var identification: UInt32 = 0
    private(set) var entries = [UInt64](repeating: Bit.masked, count: IOAPIC.pinCount)
    private var lineAsserted = [Bool](repeating: false, count: IOAPIC.pinCount)

    /// Interrupts sent to the local APIC.
    public private(set) var deliveries = 0
    /// Requests this model does not carry out (SMI, NMI, INIT, ExtINT delivery modes, a
    /// physical destination that is not the one CPU): counted so a report can show them.
    public private(set) var undeliverable = 0

    public init(deliver: @escaping Delivery) {
        self.deliver = deliver
    }

    public func redirectionEntry(_ pin: Int) -> UInt64 { entries[pin] }

    // MARK: Lines and EOI

    /// A device drives input `pin`. Pins outside the IOAPIC are ignored (a platform wiring
    /// mistake, not something a guest can cause).
    public func setLine(_ pin: Int, asserted: Bool) {
        lock.withLock { _ in setLineLocked(pin, asserted: asserted) }
    }

    private func setLineLocked(_ pin: Int, asserted: Bool) {
        guard entries.indices.contains(pin) else { return }
        let wasAsserted = lineAsserted[pin]
        lineAsserted[pin] = asserted
        if entries[pin] & Bit.levelTriggered != 0 {
            evaluateLevel(pin)
        } else if asserted && !wasAsserted && entries[pin] & Bit.masked == 0 {
            send(pin)  // an edge while masked is lost, as on hardware
        }
    }

    /// The local APIC ended a level-triggered `vector` (its EOI broadcast, or a write to the
    /// directed-EOI register).
    public func endOfInterrupt(vector: UInt8) {
        lock.withLock { _ in endOfInterruptLocked(vector: vector) }
    }

    private func endOfInterruptLocked(vector: UInt8) {
        for pin in entries.indices
        where entries[pin] & Bit.remoteIRR != 0 && UInt8(truncatingIfNeeded: entries[pin]) == vector {
            entries[pin] &= ~Bit.remoteIRR
            evaluateLevel(pin)
        }
    }

    private func evaluateLevel(_ pin: Int) {
        let entry = entries[pin]
        guard entry & Bit.levelTriggered != 0, lineAsserted[pin], entry & (Bit.masked | Bit.remoteIRR) == 0 else { return }
        if send(pin) { entries[pin] |= Bit.remoteIRR }
    }

    /// Sends a pin's interrupt to the one local APIC. Returns whether it was delivered.
    @discardableResult
    private func send(_ pin: Int) -> Bool {
        let entry = entries[pin]
        let deliveryMode = (entry >> 8) & 7
        let destination = UInt8(truncatingIfNeeded: entry >> 56)
        let physical = entry & Bit.logicalDestination == 0
        // Fixed and lowest-priority delivery to APIC 0 (or broadcast); a logical destination
        // reaches the one CPU if it names any CPU at all.
        guard deliveryMode <= 1, physical ? (destination == 0 || destination == 0xFF) : destination != 0 else {
            undeliverable += 1
            return false
        }
        deliveries += 1
        deliver(UInt8(truncatingIfNeeded: entry), entry & Bit.levelTriggered != 0)
        return true
    }

    // MARK: Registers

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        lock.withLock { _ in
            switch offset {
            case 0x00: data.storeLittleEndian(UInt64(selected))
            case 0x10: data.storeLittleEndian(UInt64(readWindow(selected)))
            default: data.storeLittleEndian(0)
            }
        }
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        let value = UInt32(truncatingIfNeeded: data.littleEndianValue)
        lock.withLock { _ in
            switch offset {
            case 0x00: selected = value & 0xFF
            case 0x10: writeWindow(selected, value)
            case 0x40: endOfInterruptLocked(vector: UInt8(truncatingIfNeeded: value))
            default: break
            }
        }
    }

    private func readWindow(_ index: UInt32) -> UInt32 {
        switch index {
        case 0x00: return identification
        case 0x01: return Self.version
        case 0x02: return identification  // arbitration ID
        case 0x10..<(0x10 + 2 * UInt32(Self.pinCount)):
            let entry = entries[Int(index - 0x10) / 2]
            return UInt32(truncatingIfNeeded: index & 1 == 0 ? entry : entry >> 32)
        default: return 0
        }
    }

    private func writeWindow(_ index: UInt32, _ value: UInt32) {
        switch index {
        case 0x00: identification = value & 0x0F00_0000
        case 0x10..<(0x10 + 2 * UInt32(Self.pinCount)):
            let pin = Int(index - 0x10) / 2
            var entry = entries[pin]
            if index & 1 == 0 {
                entry = (entry & ~Bit.writableLow) | (UInt64(value) & Bit.writableLow)
                if entry & Bit.levelTriggered == 0 { entry &= ~Bit.remoteIRR }
            } else {
                entry = (entry & 0xFFFF_FFFF) | UInt64(value & 0xFF00_0000) << 32
            }
            entries[pin] = entry
            evaluateLevel(pin)  // unmasking a line that is still asserted delivers it now
        default: break
        }
    }
}
