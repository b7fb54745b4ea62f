import Machine

/// The emulator's interrupt controller: hvbench's IOAPIC on the MMIO bus for INTx lines, and
/// MSI messages decoded straight into the bootstrap processor's local APIC. With one vCPU
/// everything runs on its thread, where device models run too; with several, device work runs on
/// whichever vCPU exited (under the VM's device lock), so the vector is posted to the bootstrap
/// processor (`X86CPU.raiseInterrupt`) and the IOAPIC locks itself against the EOIs that come
/// from that processor's thread.
final class EmulatorInterrupts: InterruptController {
    let ioapic: IOAPIC
    private unowned let cpu: X86CPU
    /// MSI writes that reached no local APIC (address outside 0xFEExxxxx, another destination,
    /// physical or logical, or a delivery mode this model does not carry out).
    private(set) var undeliverableMessages = 0

    init(cpu: X86CPU) {
        self.cpu = cpu
        ioapic = IOAPIC { [unowned cpu] vector, levelTriggered in
            cpu.raiseInterrupt(vector: vector, levelTriggered: levelTriggered)
        }
        let ioapic = self.ioapic
        cpu.apic.levelTriggeredEOI = { vector in ioapic.endOfInterrupt(vector: vector) }
    }

    func setLine(_ gsi: Int, asserted: Bool) { ioapic.setLine(gsi, asserted: asserted) }

    func signalMessage(_ message: MSIMessage) {
        let addressed =
            message.destination == 0xFF
            || (message.logicalDestination
                ? cpu.apic.acceptsLogical(destination: UInt32(message.destination))
                : message.destination == UInt8(truncatingIfNeeded: cpu.apic.id))
        guard message.isInterrupt, message.deliveryMode <= 1, addressed else {
            undeliverableMessages += 1
            return
        }
        // A vector below 16 is the local APIC's to refuse (it sets the illegal-vector error).
        cpu.raiseInterrupt(vector: message.vector, levelTriggered: false)
    }
}
