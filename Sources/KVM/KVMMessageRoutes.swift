import CKVM
import Glibc
import Machine
import Synchronization

/// MSI messages as KVM GSI routes, each with an irqfd: the first time a device signals a
/// message it gets a GSI above the IOAPIC's pins, an MSI route carrying the message
/// (KVM_SET_GSI_ROUTING) and an eventfd bound to that GSI (KVM_IRQFD); from then on signalling
/// it is one eventfd write, which KVM turns into the interrupt in the kernel, from whichever
/// thread writes it. This is how QEMU and Firecracker raise virtio interrupts under KVM.
///
/// Routes are keyed by the message itself rather than by a device's table entry: a guest that
/// reprograms an MSI-X entry simply gets a new route. The table is bounded, so a guest that
/// keeps inventing messages cannot make it grow: past `capacity` (or when KVM refuses a route)
/// messages go through KVM_SIGNAL_MSI, as before.
final class KVMMessageRoutes: @unchecked Sendable {
    /// GSIs 0-23 are the in-kernel IOAPIC's pins (0-15 also the PIC's): MSI routes follow them.
    static let firstGSI: UInt32 = 24
    /// More than every MSI-X vector of hvbench's devices, far below KVM's 4096 routes.
    static let capacity = 64

    private struct Table {
        var messages: [MSIMessage] = []
        /// Our ends of the irqfds (the irqfds themselves go when the VM does).
        var eventFDs: [MSIMessage: HostDescriptor] = [:]
        /// Set when KVM refused a route or an irqfd: no more are tried.
        var refused = false
    }

    private let vmFileDescriptor: Int32
    private let table = Mutex(Table())

    init(vmFileDescriptor: Int32) {
        self.vmFileDescriptor = vmFileDescriptor
    }

    /// Routes in the table.
    var count: Int { table.withLock { $0.messages.count } }

    /// The irqfd that raises `message`, made on first use; nil when the table is full or KVM
    /// refused, and the caller must use KVM_SIGNAL_MSI. Valid while the routes live.
    func eventFD(for message: MSIMessage) -> Int32? {
        table.withLock { state in
            if let descriptor = state.eventFDs[message] { return descriptor.rawValue }
            guard !state.refused, state.messages.count < Self.capacity else { return nil }
            let gsi = Self.firstGSI + UInt32(state.messages.count)
            let addresses = state.messages.map(\.address) + [message.address]
            let data = state.messages.map(\.data) + [message.data]
            guard ckvm_set_msi_routes(vmFileDescriptor, Self.firstGSI, addresses, data, UInt32(addresses.count)) == 0 else {
                state.refused = true
                return nil
            }
            // From here the route is in KVM's table: keep it there even if its irqfd fails, so
            // the GSIs of later routes stay where their irqfds expect them.
            state.messages.append(message)
            guard let descriptor = HostDescriptor(taking: ckvm_eventfd()),
                ckvm_irqfd(vmFileDescriptor, descriptor.rawValue, gsi) == 0
            else {
                state.refused = true
                return nil
            }
            state.eventFDs[message] = descriptor
            return descriptor.rawValue
        }
    }
}
