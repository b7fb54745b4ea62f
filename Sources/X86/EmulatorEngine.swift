import CHostTimer
import Machine
import VMTypes

/// hvbench's x86-64 emulator behind the same engine protocol as KVM: guest RAM is the VM's
/// `GuestMemory`, and port I/O and MMIO leave `run()` as exits the VMM completes, exactly as
/// KVM_RUN's do, so every device model runs unchanged under either CPU.
public final class EmulatorEngine: CPUEngine, @unchecked Sendable {
    public let kind: EmulatorKind
    let translateAfter: Int
    let codeCacheBytes: Int?
    /// What ran: a translating emulator whose host refused the code cache only interprets.
    public var engineName: String {
        "emulator-\(kind == .translate && cpu.translation == nil ? EmulatorKind.interpret.rawValue : kind.rawValue)"
    }
    public let cpu: X86CPU
    private let memory: GuestMemory

    /// The bootstrap processor, at the boot protocol's entry state. A translating emulator falls
    /// back to interpreting if the host will not map its code cache.
    /// `translateAfter`: arrivals at a RIP before its code is translated (1: at once, as the
    /// differential tests want, so every case runs translated).
    public init(
        memory: GuestMemory, entry: ProtectedModeEntry, kind: EmulatorKind = .translate,
        translateAfter: Int = TranslationCache.defaultHotAfter, codeCacheBytes: Int? = nil
    ) {
        self.memory = memory
        self.kind = kind
        self.translateAfter = translateAfter
        self.codeCacheBytes = codeCacheBytes
        cpu = X86CPU(ram: memory.base, ramSize: memory.size, timestamp: { chosttimer_rdtsc() })
        cpu.translation = Self.translationCache(kind, translateAfter: translateAfter, codeBytes: codeCacheBytes)
        cpu.enterProtectedMode(
            entryPoint: entry.entryPoint, eax: entry.eax, ebx: entry.ebx, esi: entry.esi, gdtBase: entry.gdtBase,
            gdtLimit: entry.gdtLimit,
            codeSelector: ProtectedModeEntry.codeSelector, dataSelector: ProtectedModeEntry.dataSelector,
            taskSelector: ProtectedModeEntry.taskSelector)
    }

    /// An application processor of the same machine, waiting for its SIPI.
    private init(
        memory: GuestMemory, sharing bootstrap: X86CPU, index: Int, kind: EmulatorKind, translateAfter: Int,
        codeCacheBytes: Int?
    ) {
        self.memory = memory
        self.kind = kind
        self.translateAfter = translateAfter
        self.codeCacheBytes = codeCacheBytes
        cpu = X86CPU(
            ram: memory.base, ramSize: memory.size, timestamp: { chosttimer_rdtsc() }, codeMap: bootstrap.codeMap,
            index: index)
        cpu.translation = Self.translationCache(kind, translateAfter: translateAfter, codeBytes: codeCacheBytes)
        cpu.waitForStartup()
    }

    /// A translating vCPU's code cache; nil (interpret) when the host refuses to map it.
    private static func translationCache(_ kind: EmulatorKind, translateAfter: Int, codeBytes: Int?) -> TranslationCache? {
        guard kind == .translate else { return nil }
        if let codeBytes { return TranslationCache(codeBytes: codeBytes, hotAfter: translateAfter) }
        return TranslationCache(hotAfter: translateAfter)
    }

    /// One host thread per vCPU over the same RAM (see `EmulatedProcessors`); each application
    /// processor waits for the guest's INIT-SIPI-SIPI, starting in real mode at the SIPI vector.
    public func makeApplicationProcessors(count: Int) throws -> [any CPUEngine] {
        guard cpu.processors == nil else { throw EngineError("this machine's application processors exist already") }
        guard (1..<CodeMap.maximumProcessors).contains(count) else {
            throw EngineError("the emulator runs at most \(CodeMap.maximumProcessors) vCPUs; \(count + 1) asked for")
        }
        let processors = (1...count).map {
            EmulatorEngine(
                memory: memory, sharing: cpu, index: $0, kind: kind, translateAfter: translateAfter,
                codeCacheBytes: codeCacheBytes)
        }
        _ = EmulatedProcessors([cpu] + processors.map(\.cpu))
        return processors
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
            return .shutdown("\(why) [emulator vCPU \(cpu.apic.id), rip 0x\(String(cpu.rip, radix: 16))]")
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
