// The vocabulary every layer shares (which emulator, which device set, exit counters) lives in
// VMTypes, below Machine; everything that imports Results sees it too.
@_exported import VMTypes

/// One system a run can measure, defined once: what runs the guest's code, which devices the
/// guest drives, and how reports show and compare it. Every other part of hvbench (the CLI's
/// `--mode` and `--peer`, the runner, the writers, derived figures, `hvbench list`) asks the
/// registry instead of matching names.
public struct SystemDefinition: Sendable, Hashable, CustomStringConvertible {
    /// The devices a VM gives the guest.
    public typealias Devices = DeviceSet

    /// The CPU of one of hvbench's own VMs.
    public enum VMCPU: Sendable, Hashable {
        case kvm
        /// KVM presenting its paravirtual CPU interface (leaves 0x40000000/1: kvmclock, PV EOI,
        /// PV TLB flush, PV IPIs, steal time, ...), which the guest uses where it can.
        case kvmParavirtual
        /// hvbench's emulator; nil takes the run's `--emulator`, a kind pins it.
        case emulator(EmulatorKind?)

        /// Whether the engine is KVM (with or without its paravirtual interface).
        public var usesKVM: Bool { self == .kvm || self == .kvmParavirtual }
    }

    /// What runs the workload: which kind of round measures this system.
    public enum Runner: Sendable, Hashable {
        /// The workload source built for the host, as a process: the baseline.
        case native
        /// The benchmark guest under hvbench's own VMM.
        case vm(cpu: VMCPU, devices: Devices)
        /// The same guest under QEMU, with KVM or with TCG.
        case qemu(kvm: Bool, devices: Devices)
        /// The native runner in an OCI container.
        case container(ContainerShape)
    }

    public let name: String
    public let runner: Runner
    /// One line for `hvbench list` and the reports.
    public let summary: String
    /// The colour charts give it.
    public let colour: String
    /// Whether `--mode all` runs it.
    public let runByDefault: Bool
    /// Systems it is compared with in derived figures (this / other), beside % of native: the
    /// modes the classic claims are about and the QEMU peer with the same CPU and devices.
    public let comparedWith: [String]

    public init(
        name: String, runner: Runner, summary: String, colour: String, runByDefault: Bool = false,
        comparedWith: [String] = []
    ) {
        self.name = name
        self.runner = runner
        self.summary = summary
        self.colour = colour
        self.runByDefault = runByDefault
        self.comparedWith = comparedWith
    }

    public var description: String { name }

    /// The native baseline everything else is a percentage of.
    public var isBaseline: Bool { runner == .native }

    /// A peer (chosen with `--peer`, not `--mode`): QEMU, or a second container runtime.
    public var isPeer: Bool {
        switch runner {
        case .qemu: return true
        case .container(let shape): return shape.runtime != .crun
        case .native, .vm: return false
        }
    }

    /// The container shape; nil for other systems.
    public var container: ContainerShape? {
        if case .container(let shape) = runner { return shape }
        return nil
    }

    /// The devices the guest drives; nil natively.
    public var devices: Devices? {
        switch runner {
        case .native, .container: return nil
        case .vm(_, let devices), .qemu(_, let devices): return devices
        }
    }

    /// Whether it needs the host's `/dev/kvm`.
    public var needsKVM: Bool {
        switch runner {
        case .native, .container: return false
        case .vm(let cpu, _): return cpu.usesKVM
        case .qemu(let kvm, _): return kvm
        }
    }

    /// Whether hvbench's emulator runs the guest.
    public var usesEmulator: Bool {
        if case .vm(.emulator, _) = runner { return true }
        return false
    }
}

/// Every system and peer, in the order reports list them: adding a system is a definition in a
/// file of its own (an extension of `SystemDefinition`) and one line in `all`.
public enum SystemRegistry {
    public static let all: [SystemDefinition] = [
        .native, .hardwareAssist, .fullEmulation, .paravirtIO, .paravirt, .emulatorVirtio, .fullEmulationInterpret,
        .container, .containerBridge, .containerQuota, .qemuTCG, .qemuKVM, .qemuKVMVirtio, .containerRunc,
    ]

    public static func named(_ name: String) -> SystemDefinition? { all.first { $0.name == name } }

    /// The systems `--mode` can name, and what `--mode all` runs.
    public static var modes: [SystemDefinition] { all.filter { !$0.isPeer } }
    public static var defaultModes: [SystemDefinition] { all.filter(\.runByDefault) }
    public static var peers: [SystemDefinition] { all.filter(\.isPeer) }

    /// The VM system with this CPU and these devices (`--cpu` and `--io`), following the run's
    /// `--emulator`.
    public static func vm(cpu: SystemDefinition.VMCPU, devices: SystemDefinition.Devices) -> SystemDefinition? {
        all.first { $0.runner == .vm(cpu: cpu, devices: devices) }
    }

    /// Position in reports; unknown names sort last.
    public static func order(_ name: String) -> Int { all.firstIndex { $0.name == name } ?? all.count }

    public static func colour(_ name: String) -> String? { named(name)?.colour }

    /// Whether a result's system, "mode" or in merged reports "host/mode", is the native baseline.
    public static func isBaseline(_ system: String) -> Bool {
        let mode = system.split(separator: "/").last.map(String.init) ?? system
        return named(mode)?.isBaseline == true
    }
}
