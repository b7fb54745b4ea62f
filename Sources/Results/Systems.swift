/// The systems a run can measure. VM modes are presets over the CPU engine and the I/O devices.
public enum SystemKind: String, CaseIterable, Sendable, Codable {
    case native
    case hardwareAssist = "hardware-assist"
    case fullEmulation = "full-emulation"
    case paravirtIO = "paravirt-io"
    /// The fourth combination of the two axes (`--cpu emulator --io virtio`); not a preset mode.
    case emulatorVirtio = "emulator-virtio"

    /// What `--mode all` runs: the three preset VM modes and native.
    public static let implemented: [SystemKind] = [.hardwareAssist, .paravirtIO, .fullEmulation, .native]

    /// One line for `hvbench list`: the CPU engine and the devices the guest drives.
    public var summary: String {
        switch self {
        case .native: return "the host itself, no VM"
        case .hardwareAssist: return "KVM + emulated e1000 and IDE"
        case .paravirtIO: return "KVM + virtio-net and virtio-blk"
        case .fullEmulation: return "hvbench's x86-64 emulator + emulated e1000 and IDE"
        case .emulatorVirtio: return "hvbench's x86-64 emulator + virtio (--cpu emulator --io virtio)"
        }
    }

    /// Whether the VM's CPU is hvbench's emulator (else KVM); nil for native.
    public var usesEmulator: Bool? {
        switch self {
        case .fullEmulation, .emulatorVirtio: return true
        case .hardwareAssist, .paravirtIO: return false
        case .native: return nil
        }
    }
}

/// Other VMMs that run the same guest image beside hvbench's systems.
public enum PeerKind: String, CaseIterable, Sendable, Codable {
    case qemuTCG = "qemu-tcg"
    case qemuKVM = "qemu-kvm"
    case qemuKVMVirtio = "qemu-kvm-virtio"
}

/// Every system and peer, in the order reports list them, with the colour charts give each:
/// the one list that knows them all (a new system added here appears everywhere).
public enum SystemCatalogue {
    public static let entries: [(name: String, colour: String)] = [
        (SystemKind.native.rawValue, "#4c78a8"),
        (SystemKind.hardwareAssist.rawValue, "#f58518"),
        (SystemKind.fullEmulation.rawValue, "#e45756"),
        (SystemKind.paravirtIO.rawValue, "#54a24b"),
        (SystemKind.emulatorVirtio.rawValue, "#eeca3b"),
        (PeerKind.qemuTCG.rawValue, "#b279a2"),
        (PeerKind.qemuKVM.rawValue, "#9d755d"),
        (PeerKind.qemuKVMVirtio.rawValue, "#72b7b2"),
    ]

    /// Position in reports; unknown names sort last.
    public static func order(_ name: String) -> Int { entries.firstIndex { $0.name == name } ?? entries.count }

    public static func colour(_ name: String) -> String? { entries.first { $0.name == name }?.colour }
}
