import CKVM
import Machine
import Synchronization

/// Device interrupts under KVM: INTx lines into the in-kernel IOAPIC (KVM_IRQ_LINE, GSIs by
/// KVM's default routing, where 0-23 are the IOAPIC's pins) and MSI messages straight to the
/// in-kernel local APIC (KVM_SIGNAL_MSI). Neither leaves the calling thread: KVM injects the
/// vector on the vCPU's next entry, or wakes a vCPU halted in the kernel.
final class KVMInterrupts: InterruptController, @unchecked Sendable {
    /// The VM descriptor's number; the engine owns (and closes) the descriptor and outlives
    /// every device run, so this is only used while it is open.
    private let vmFileDescriptor: Int32
    /// Calls KVM refused, with the last errno: reported with the engine's diagnostics. Devices
    /// call from the vCPU thread and the I/O thread alike.
    private let failures = Mutex<(calls: Int, lastError: Int32)>((0, 0))
    var failedCalls: Int { failures.withLock { $0.calls } }
    var lastError: Int32 { failures.withLock { $0.lastError } }

    init(vmFileDescriptor: Int32) {
        self.vmFileDescriptor = vmFileDescriptor
    }

    func setLine(_ gsi: Int, asserted: Bool) {
        guard gsi >= 0, gsi < 24 else { return }
        record(ckvm_irq_line(vmFileDescriptor, UInt32(gsi), asserted ? 1 : 0))
    }

    func signalMessage(_ message: MSIMessage) {
        // KVM returns 0 for a message no APIC accepted (a bad destination): not an error here.
        record(ckvm_signal_msi(vmFileDescriptor, message.address, message.data))
    }

    private func record(_ result: Int32) {
        guard result < 0 else { return }
        failures.withLock { $0 = ($0.calls + 1, -result) }
    }
}
