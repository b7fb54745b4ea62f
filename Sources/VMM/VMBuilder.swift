import Foundation
import KVM
import Machine
import VMTypes
import X86

/// Collects what the guest writes to COM1, optionally echoing it (for `hvbench boot`).
final class ConsoleCapture: @unchecked Sendable {
    private(set) var bytes: [UInt8] = []
    private let echo: Bool
    private let limit: Int
    private let onLine: ((String) -> Void)?
    private var lineStart = 0

    init(echo: Bool, limit: Int = 16 << 20, onLine: ((String) -> Void)? = nil) {
        self.echo = echo
        self.limit = limit
        self.onLine = onLine
        bytes.reserveCapacity(4096)
    }

    func append(_ byte: UInt8) {
        if bytes.count < limit { bytes.append(byte) }  // a runaway guest cannot exhaust host memory
        if byte == 0x0A, let onLine, lineStart < bytes.count {
            // A tty ends its lines with CR LF (Linux's ONLCR): the CR is part of the line end.
            var end = bytes.count - 1
            if end > lineStart && bytes[end - 1] == 0x0D { end -= 1 }
            onLine(String(decoding: bytes[lineStart..<end], as: UTF8.self))
            lineStart = bytes.count
        }
        if echo {
            var value = byte
            _ = write(STDOUT_FILENO, &value, 1)
        }
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// Builds a VM for one kernel boot and runs it under the watchdog.
public enum VMBuilder {
    public struct Boot: Sendable {
        public let outcome: VMOutcome
        public let console: String
        public let engineName: String
        public let bootProtocol: String
        /// The TSC frequency the guest sees (KVM's figure, else the calibrated host one).
        public let guestTSCKilohertz: Int
        /// Devices the guest drove into an error state, with the reason.
        public let brokenDevices: [String]
        /// Guest instructions the emulator retired (nil under KVM, which cannot count them).
        public let instructionsRetired: UInt64?
        /// Engine findings worth reporting (e.g. instructions the emulator does not implement).
        public let engineDiagnostics: [String]
        /// Where the time to the guest's main went (vm.boot's log shows it).
        public let startupPhases: StartupPhases
    }

    /// The CPU engine that runs a guest.
    public enum CPU {
        /// KVM; `paravirtualCPU` presents its paravirtual CPU interface (the `paravirt` system).
        case kvm(KVMSystem, paravirtualCPU: Bool = false)
        /// hvbench's x86-64 emulator: translating (the interpreter where the translator stops)
        /// or interpreting only.
        /// `translateAfter`: arrivals at a RIP before its code is translated (1: at once);
        /// `codeCacheBytes`: the translator's code cache per vCPU (nil: its default).
        case emulator(
            EmulatorKind = .translate, translateAfter: Int = TranslationCache.defaultHotAfter, codeCacheBytes: Int? = nil)

        /// The engine factory: every engine starts at a boot protocol's 32-bit entry.
        func makeEngine(memory: GuestMemory, entry: ProtectedModeEntry) throws -> any CPUEngine {
            switch self {
            case .kvm(let system, let paravirtualCPU):
                return try KVMEngine(system: system, memory: memory, entry: entry, paravirtualCPU: paravirtualCPU)
            case .emulator(let kind, let translateAfter, let codeCacheBytes):
                return EmulatorEngine(
                    memory: memory, entry: entry, kind: kind, translateAfter: translateAfter, codeCacheBytes: codeCacheBytes)
            }
        }
    }

    /// Builds the VM a description asks for — memory, the kernel and its command line, the
    /// engine, the devices — runs it under the watchdog and tears it down.
    /// - Parameters:
    ///   - timeout: the watchdog's limit in seconds.
    ///   - echoConsole: copies the guest's console to standard output (`hvbench boot`).
    ///   - prepare: runs after the kernel is loaded and before the CPU starts (test corpora).
    ///   - inspect: runs after the guest ended, with its memory (test results).
    ///   - hostStop: stops the guest early when requested (`VMEnding.stoppedByHost`).
    public static func boot(
        _ vm: VMDescription, timeout: Double, echoConsole: Bool = false, onConsoleLine: ((String) -> Void)? = nil,
        prepare: ((GuestMemory) throws -> Void)? = nil, inspect: ((GuestMemory) -> Void)? = nil,
        hostStop: HostStopRequest? = nil
    ) throws -> Boot {
        let startedAt = MonotonicClock.nanoseconds()
        let memory = try GuestMemory(size: UInt64(vm.memoryMiB) << 20, numaNode: vm.numaNode)
        var phases = StartupPhases(startedAt: startedAt)
        phases.mark("memory")
        let (entry, bootProtocol) = try KernelLoader.load(
            vm.kernel, initrd: vm.initrd, into: memory, commandLine: vm.commandLine, cpuCount: vm.vcpus,
            ramIsZero: true)  // mapped just above
        try prepare?(memory)
        phases.mark("load")
        let engine = try vm.cpu.makeEngine(memory: memory, entry: entry)
        phases.mark("engine")
        let console = ConsoleCapture(echo: echoConsole, onLine: onConsoleLine)
        let machine = try VirtualMachine(
            memory: memory, engine: engine, startedAt: startedAt, routesDoorbells: vm.io?.ioThread ?? true,
            ioThreadPollMicroseconds: vm.io?.ioThreadPollMicroseconds ?? DoorbellPolling.defaultLimitMicroseconds,
            vcpus: vm.vcpus
        ) { console.append($0) }
        phases.mark("machine")
        for device in vm.io?.devices(on: machine.platform) ?? [] { try machine.add(device) }
        phases.mark("devices")
        let outcome = machine.run(timeout: timeout, numaNode: vm.numaNode, pinnedCPUs: vm.pinnedCPUs, hostStop: hostStop)
        inspect?(memory)
        phases.record(outcome)
        return Boot(
            outcome: outcome, console: console.text, engineName: engine.engineName, bootProtocol: bootProtocol,
            // The emulator's rdtsc is the host TSC, so its guest converts cycles with the host rate.
            guestTSCKilohertz: engine.guestTSCKilohertz ?? TSC.calibratedKilohertz, brokenDevices: machine.brokenDevices,
            instructionsRetired: engine.instructionsRetired, engineDiagnostics: engine.diagnostics,
            startupPhases: phases)
    }

    /// Guest memory sizes hvbench accepts: enough for the guest, and below the 3 GiB MMIO hole.
    public static let memoryRangeMiB = 16...3072
}

/// One VM, typed: what `VMBuilder.boot` builds (Firecracker's VmResources for one boot).
public struct VMDescription {
    public var kernel: [UInt8]
    /// An initial RAM disk (PVH ELF kernels and bzImages).
    public var initrd: [UInt8]?
    public var commandLine: String
    public var memoryMiB: Int
    public var cpu: VMBuilder.CPU
    /// The firmware tables list them; the guest starts the others.
    public var vcpus: Int
    public var io: IOConfiguration?
    /// Guest RAM and vCPU threads on this NUMA node.
    public var numaNode: Int?
    /// Host CPUs for the vCPU threads (vCPU i on entry i mod count).
    public var pinnedCPUs: [Int]?

    public init(
        kernel: [UInt8], commandLine: String = "", memoryMiB: Int, cpu: VMBuilder.CPU, vcpus: Int = 1,
        io: IOConfiguration? = nil, numaNode: Int? = nil, pinnedCPUs: [Int]? = nil, initrd: [UInt8]? = nil
    ) {
        self.kernel = kernel
        self.initrd = initrd
        self.commandLine = commandLine
        self.memoryMiB = memoryMiB
        self.cpu = cpu
        self.vcpus = vcpus
        self.io = io
        self.numaNode = numaNode
        self.pinnedCPUs = pinnedCPUs
    }
}
