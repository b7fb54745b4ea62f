import CKVM
import Machine
import Synchronization

/// Device interrupts under KVM: INTx lines into the in-kernel IOAPIC (KVM_IRQ_LINE, GSIs 0-23
/// are its pins) and MSI messages to the in-kernel local APIC through irqfds on GSI routes
/// (`KVMMessageRoutes`), or KVM_SIGNAL_MSI for a message that has no route. Neither leaves the
/// calling thread: KVM injects the vector on the vCPU's next entry, or wakes a vCPU halted in
/// the kernel. INTx stays an ioctl: a level-triggered irqfd needs a resample eventfd and a
/// user-space handler for each EOI, which costs more than the ioctl it saves.
final class KVMInterrupts: InterruptController, @unchecked Sendable {
    /// The VM descriptor's number; the engine owns (and closes) the descriptor and outlives
    /// every device run, so this is only used while it is open.
    private let vmFileDescriptor: Int32
    /// Calls KVM refused, with the last errno: reported with the engine's diagnostics. Devices
    /// call from the vCPU thread and the I/O thread alike.
    private let failures = Mutex<(calls: Int, lastError: Int32)>((0, 0))
    var failedCalls: Int { failures.withLock { $0.calls } }
    var lastError: Int32 { failures.withLock { $0.lastError } }

    let routes: KVMMessageRoutes
    /// Messages raised through an irqfd, and through KVM_SIGNAL_MSI.
    private let signalled = Atomic<Int>(0)
    private let signalledDirectly = Atomic<Int>(0)
    var messagesByEventFD: Int { signalled.load(ordering: .relaxed) }
    var messagesByIoctl: Int { signalledDirectly.load(ordering: .relaxed) }

    init(vmFileDescriptor: Int32) {
        self.vmFileDescriptor = vmFileDescriptor
        routes = KVMMessageRoutes(vmFileDescriptor: vmFileDescriptor)
    }

    func setLine(_ gsi: Int, asserted: Bool) {
        guard gsi >= 0, gsi < 24 else { return }
        record(ckvm_irq_line(vmFileDescriptor, UInt32(gsi), asserted ? 1 : 0))
    }

    func signalMessage(_ message: MSIMessage) {
        // Only messages into the local APIC window get a route: anything else is a stray DMA
        // write, which KVM_SIGNAL_MSI drops as before.
        if message.isInterrupt, let eventFD = routes.eventFD(for: message), ckvm_eventfd_signal(eventFD) == 0 {
            signalled.add(1, ordering: .relaxed)
            return
        }
        signalledDirectly.add(1, ordering: .relaxed)
        // KVM returns 0 for a message no APIC accepted (a bad destination): not an error here.
        record(ckvm_signal_msi(vmFileDescriptor, message.address, message.data))
    }

    private func record(_ result: Int32) {
        guard result < 0 else { return }
        failures.withLock { $0 = ($0.calls + 1, -result) }
    }
}
