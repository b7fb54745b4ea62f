/// How the emulator runs guest code: translated into host code where the binary translator
/// handles it (the interpreter runs the rest), or interpreted throughout.
public enum EmulatorKind: String, Sendable, CaseIterable, Codable {
    case translate, interpret
}

/// The devices a VM gives the guest, as one set.
public enum DeviceSet: String, Sendable, Hashable, CaseIterable {
    /// Emulated e1000 NIC and IDE disk.
    case legacy
    /// virtio-net and virtio-blk (virtio 1.x PCI).
    case virtio
}
