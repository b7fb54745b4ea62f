/// Where a device's memory BAR currently sits on the MMIO bus, and the move when the guest
/// reprograms it. The bus is held weakly: it owns the device while the BAR is mapped, so a
/// strong reference back would keep the device, its guest memory and the bus alive forever.
struct MemoryBAR {
    private weak var bus: IOBus?
    let length: UInt64
    private(set) var address: UInt64?

    init(bus: IOBus, length: UInt64) {
        self.bus = bus
        self.length = length
    }

    /// Unmaps `device` and maps it at `newAddress` (nil: unmapped). An address that overlaps
    /// another device leaves the BAR unmapped, as a conflicting BAR decodes nothing.
    mutating func move(_ device: BusDevice, to newAddress: UInt64?) {
        guard newAddress != address, let bus else { return }
        bus.remove(device)
        address = nil
        if let newAddress, (try? bus.insert(device, at: newAddress, length: length)) != nil { address = newAddress }
    }
}
