/// Where device interrupts go: the platform's interrupt controller, the same two calls on every
/// engine. Under KVM they are the in-kernel IOAPIC and local APIC (KVM_IRQ_LINE,
/// KVM_SIGNAL_MSI); under the emulator, hvbench's IOAPIC and the interpreter's local APIC.
/// Devices never know which.
public protocol InterruptController: AnyObject {
    /// Drives global system interrupt `gsi` (an IOAPIC input pin) to `asserted`. Levels are
    /// logical: the platform wires every PCI INTx line active-high, as KVM's and QEMU's IOAPICs
    /// treat them.
    func setLine(_ gsi: Int, asserted: Bool)
    /// A message-signalled interrupt: the address/data pair the guest programmed into an MSI or
    /// MSI-X table entry, written "to" the local APIC page.
    func signalMessage(_ message: MSIMessage)
}

/// An MSI message as the guest programmed it (Intel SDM vol. 3 §11.11): the address selects
/// the destination APIC, the data word the vector, delivery mode and trigger mode.
public struct MSIMessage: Hashable, Sendable {
    public var address: UInt64
    public var data: UInt32

    public init(address: UInt64, data: UInt32) {
        self.address = address
        self.data = data
    }

    /// Only addresses in the 0xFEExxxxx window reach a local APIC; anything else is a DMA write
    /// to memory that no interrupt controller sees.
    public var isInterrupt: Bool { address >> 20 == 0xFEE }
    public var destination: UInt8 { UInt8(truncatingIfNeeded: address >> 12) }
    /// Destination mode (address bit 2): the destination is a logical ID (Linux's flat and
    /// cluster modes), not an APIC ID.
    public var logicalDestination: Bool { address & 0x4 != 0 }
    public var vector: UInt8 { UInt8(truncatingIfNeeded: data) }
    /// 0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 7 ExtINT.
    public var deliveryMode: UInt32 { (data >> 8) & 7 }
    public var levelTriggered: Bool { data & (1 << 15) != 0 }
}

/// A controller that leads nowhere, for platforms built without an engine (device tests). It
/// remembers the last level of each line and every message, so a test can look at them.
public final class InterruptRecorder: InterruptController {
    public private(set) var levels: [Int: Bool] = [:]
    public private(set) var messages: [MSIMessage] = []
    /// Rising edges per line.
    public private(set) var assertions: [Int: Int] = [:]

    public init() {}

    public func setLine(_ gsi: Int, asserted: Bool) {
        if asserted && levels[gsi] != true { assertions[gsi, default: 0] += 1 }
        levels[gsi] = asserted
    }

    public func signalMessage(_ message: MSIMessage) { messages.append(message) }
}

/// One interrupt input of the platform held by one device: it remembers its level so a device
/// can state "asserted" as often as it likes and the controller sees only the changes, and it
/// counts the rising edges for the report.
public final class InterruptLine {
    public let gsi: Int
    private let controller: any InterruptController
    public private(set) var isAsserted = false
    /// Rising edges: how often the device asked for the CPU's attention on this line.
    public private(set) var assertions = 0

    public init(gsi: Int, controller: any InterruptController) {
        self.gsi = gsi
        self.controller = controller
    }

    public func set(_ asserted: Bool) {
        guard asserted != isAsserted else { return }
        isAsserted = asserted
        if asserted { assertions += 1 }
        controller.setLine(gsi, asserted: asserted)
    }
}
