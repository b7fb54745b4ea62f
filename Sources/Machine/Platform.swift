/// What devices plug into: one VM's guest memory, its port-I/O and MMIO buses, its interrupt
/// controller, and the PCI host bridge (created, and placed at 0xCF8, when the first PCI device
/// asks for it, so a VM without PCI devices has no configuration ports at all).
public final class Platform {
    public let memory: GuestMemory
    public let portBus: IOBus
    public let mmioBus: IOBus
    /// Where device interrupts go: the engine's (see `CPUEngine.connectInterrupts`).
    public let interrupts: any InterruptController
    /// Doorbells the engine catches without a vCPU exit, served on its I/O thread; nil when the
    /// engine has none (the emulator) or it is switched off.
    public let doorbells: (any DoorbellRouter)?
    /// MMIO writes the engine buffers instead of exiting (KVM's coalesced MMIO); nil when it
    /// cannot (the emulator, which has no exits to save) or it is switched off.
    public let coalescedWrites: (any WriteCoalescer)?
    /// Device timers, whose actions the VM runs on the vCPU thread.
    public let timers: DeviceTimers
    private var hostBridge: PCIBus?

    public init(
        memory: GuestMemory, portBus: IOBus, mmioBus: IOBus, interrupts: any InterruptController = InterruptRecorder(),
        doorbells: (any DoorbellRouter)? = nil, coalescedWrites: (any WriteCoalescer)? = nil,
        timers: DeviceTimers = DeviceTimers()
    ) {
        self.timers = timers
        self.memory = memory
        self.portBus = portBus
        self.mmioBus = mmioBus
        self.interrupts = interrupts
        self.doorbells = doorbells
        self.coalescedWrites = coalescedWrites
    }

    /// PCI bus 0, with its type-1 configuration ports on the port bus.
    public func pci() throws -> PCIBus {
        if let hostBridge { return hostBridge }
        let bus = PCIBus(mmio: mmioBus, interrupts: interrupts)
        try portBus.insert(bus, at: PCIBus.base, length: 8)
        hostBridge = bus
        return bus
    }
}

/// A device model in a VM. It places itself on the platform (ports, a PCI slot whose BARs it
/// maps itself) and reports its health; the VM and the VMM know devices only through this, so a
/// new device is one file that conforms and one line where a VM's devices are listed.
public protocol Device: AnyObject {
    /// How reports name it ("e1000", "virtio-blk", ...).
    var name: String { get }
    func attach(to platform: Platform) throws
    /// Why the guest drove the device into an error state; nil while it is healthy.
    var brokenReason: String? { get }
    /// Doorbells the guest's driver rang (virtio notifications, e1000 tail writes).
    var doorbells: Int { get }
    /// Back to the power-on state, as a driver's reset leaves it (and healed if it was broken).
    func reset()
    /// Reads of an interrupt-cause register (e1000 ICR, virtio ISR): the per-interrupt register
    /// traffic that message-signalled interrupts avoid.
    var interruptCauseReads: Int { get }
    /// Doorbells that reached the device through the engine's I/O thread, not a vCPU exit.
    var ioThreadDoorbells: Int { get }
}

extension Device {
    public var brokenReason: String? { nil }
    public var doorbells: Int { 0 }
    public var interruptCauseReads: Int { 0 }
    public var ioThreadDoorbells: Int { 0 }
}
