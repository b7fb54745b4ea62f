import CHostTimer
import Machine

/// hvbench's x86-64 interpreter behind the same engine protocol as KVM: guest RAM is the VM's
/// `GuestMemory`, and port I/O and MMIO leave `run()` as exits the VMM completes, exactly as
/// KVM_RUN's do, so every device model runs unchanged under either CPU.
public final class EmulatorEngine: CPUEngine, @unchecked Sendable {
    public let engineName = "emulator"
    public let cpu: X86CPU
    private let memory: GuestMemory

    public init(memory: GuestMemory, entry: ProtectedModeEntry) {
        self.memory = memory
        cpu = X86CPU(ram: memory.base, ramSize: memory.size, timestamp: { chosttimer_rdtsc() })
        cpu.enterProtectedMode(
            entryPoint: entry.entryPoint, eax: entry.eax, ebx: entry.ebx, gdtBase: entry.gdtBase, gdtLimit: entry.gdtLimit,
            codeSelector: ProtectedModeEntry.codeSelector, dataSelector: ProtectedModeEntry.dataSelector,
            taskSelector: ProtectedModeEntry.taskSelector)
    }

    public func run() throws -> VMExit {
        switch cpu.run() {
        case .deviceAccess:
            guard let access = cpu.pendingDeviceAccess else {
                throw EngineError("emulator stopped for a device access it did not record")
            }
            let data = cpu.deviceLog.buffer + access.offset
            switch access.kind {
            case .port:
                return .portIO(
                    PortIOExit(
                        port: UInt16(truncatingIfNeeded: access.address), size: access.size, count: access.count,
                        isWrite: access.isWrite, data: data))
            case .mmio:
                return .mmio(MMIOExit(address: access.address, size: access.size, isWrite: access.isWrite, data: data))
            }
        case .halt:
            return .halt
        case .shutdown(let why):
            return .shutdown("\(why) [emulator, rip 0x\(String(cpu.rip, radix: 16))]")
        case .interrupted:
            return .interrupted
        }
    }

    public func requestStop() { cpu.requestStop() }

    public var interruptCounts: (taken: Int, endOfInterrupts: Int?)? { (cpu.apic.delivered, cpu.apic.endOfInterrupts) }

    /// hvbench's IOAPIC at its usual address, feeding this CPU's local APIC.
    public func connectInterrupts(mmioBus: IOBus) throws -> any InterruptController {
        let controller = EmulatorInterrupts(cpu: cpu)
        try mmioBus.insert(controller.ioapic, at: IOAPIC.base, length: IOAPIC.length)
        return controller
    }

    /// Guest instructions retired so far.
    public var instructionsRetired: UInt64? { cpu.retired }

    /// Instructions the guest tried that the emulator does not implement (each raised #UD).
    public var diagnostics: [String] {
        cpu.unimplemented.map { "emulator: unimplemented instruction at \($0) (raised #UD in the guest)" }
    }
}

extension X86CPU {
    /// The device access the last `.deviceAccess` stop is waiting for.
    var pendingDeviceAccess: DeviceLog.Entry? { deviceLog.entries.last }
}
