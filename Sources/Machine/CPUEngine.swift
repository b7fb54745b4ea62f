/// A port-I/O exit. For reads the VMM fills `data` before the next `run()`, which completes the
/// instruction; `count` > 1 for string instructions (`rep insb/outsw`...), `size * count` bytes.
public struct PortIOExit {
    public var port: UInt16
    public var size: Int
    public var count: Int
    public var isWrite: Bool
    public var data: UnsafeMutableRawPointer

    public init(port: UInt16, size: Int, count: Int, isWrite: Bool, data: UnsafeMutableRawPointer) {
        self.port = port
        self.size = size
        self.count = count
        self.isWrite = isWrite
        self.data = data
    }
}

/// An access to guest-physical memory that is not RAM. Same completion rule as port I/O.
public struct MMIOExit {
    public var address: UInt64
    public var size: Int
    public var isWrite: Bool
    public var data: UnsafeMutableRawPointer

    public init(address: UInt64, size: Int, isWrite: Bool, data: UnsafeMutableRawPointer) {
        self.address = address
        self.size = size
        self.isWrite = isWrite
        self.data = data
    }
}

/// What a CPU engine hands back to the VMM.
public enum VMExit {
    case portIO(PortIOExit)
    case mmio(MMIOExit)
    /// `hlt` with interrupts that can never arrive: the guest is finished.
    case halt
    /// Triple fault, reset or power-off requested by the guest.
    case shutdown(String)
    /// `requestStop()` was called (watchdog); the guest state is intact.
    case interrupted
}

/// The register state a boot protocol starts the CPU in: 32-bit protected mode, flat 4 GiB
/// segments, paging off (the PVH and multiboot v1 entry conditions).
public struct ProtectedModeEntry: Equatable, Sendable {
    public var entryPoint: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    /// The Linux boot protocol passes its boot_params (the "zero page") here.
    public var esi: UInt32
    /// Guest-physical address of the GDT the loader wrote (code 0x10, data 0x18, TSS 0x20).
    public var gdtBase: UInt32
    public var gdtLimit: UInt16

    public static let codeSelector: UInt16 = 0x10
    public static let dataSelector: UInt16 = 0x18
    public static let taskSelector: UInt16 = 0x20

    public init(entryPoint: UInt32, eax: UInt32 = 0, ebx: UInt32, esi: UInt32 = 0, gdtBase: UInt32, gdtLimit: UInt16) {
        self.entryPoint = entryPoint
        self.eax = eax
        self.ebx = ebx
        self.esi = esi
        self.gdtBase = gdtBase
        self.gdtLimit = gdtLimit
    }
}

/// A CPU that runs a guest: KVM's vCPU or hvbench's x86-64 interpreter. Devices never know
/// which one drives them.
public protocol CPUEngine: AnyObject {
    /// "kvm", "emulator-translate", "emulator-interpret": recorded with results.
    var engineName: String { get }
    /// Runs the guest until the VMM must handle something. Errors are unrecoverable faults of
    /// the engine (KVM internal error, an instruction the emulator cannot run, ...).
    func run() throws -> VMExit
    /// Makes a `run()` in progress on another thread return `.interrupted` soon. Thread-safe.
    func requestStop()
    /// Findings worth reporting with a result (e.g. instructions the emulator does not implement).
    var diagnostics: [String] { get }
    /// Guest instructions retired, where the engine can count them (the emulator; not KVM).
    var instructionsRetired: UInt64? { get }
    /// The TSC rate the guest sees in kHz, where the engine knows it (KVM's figure); nil when the
    /// guest sees the host's TSC.
    var guestTSCKilohertz: Int? { get }
    /// Interrupts taken so far, and EOIs written where the engine sees them: the emulator's own
    /// local APIC counts both; KVM's statistics count injections only.
    var interruptCounts: (taken: Int, endOfInterrupts: Int?)? { get }
    /// MSI messages raised by writing an irqfd (KVM's GSI routes), where the engine has them.
    var interruptsByEventFD: Int? { get }
    /// The interrupt controller devices raise interrupts through: the engine's own IOAPIC and
    /// MSI path, placing whatever registers it needs on `mmioBus`. Called once, before devices
    /// are added, on the thread that builds the VM.
    func connectInterrupts(mmioBus: IOBus) throws -> any InterruptController
    /// The engine's I/O thread for doorbells, where it has one (KVM's ioeventfds).
    /// - Parameter pollLimitNanoseconds: how long the thread may poll before it sleeps.
    func makeDoorbellRouter(pollLimitNanoseconds: UInt64) -> (any DoorbellRouter)?
    /// The engine's buffer for MMIO writes that need no exit each, where it has one (KVM's
    /// coalesced MMIO ring).
    func makeWriteCoalescer() -> (any WriteCoalescer)?
    /// vCPUs 1 ..< 1 + count on the same machine, waiting for the guest to start them
    /// (INIT-SIPI-SIPI); an engine that runs one vCPU only throws, saying so.
    func makeApplicationProcessors(count: Int) throws -> [any CPUEngine]
}

extension CPUEngine {
    public var diagnostics: [String] { [] }
    public var instructionsRetired: UInt64? { nil }
    public var guestTSCKilohertz: Int? { nil }
    public var interruptCounts: (taken: Int, endOfInterrupts: Int?)? { nil }
    public var interruptsByEventFD: Int? { nil }
    public func connectInterrupts(mmioBus: IOBus) throws -> any InterruptController { InterruptRecorder() }
    public func makeDoorbellRouter(pollLimitNanoseconds: UInt64) -> (any DoorbellRouter)? { nil }
    public func makeWriteCoalescer() -> (any WriteCoalescer)? { nil }
    public func makeApplicationProcessors(count: Int) throws -> [any CPUEngine] {
        throw EngineError("the \(engineName) engine runs one vCPU")
    }
}

/// Engine errors the VM reports as the reason a run failed.
public struct EngineError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
