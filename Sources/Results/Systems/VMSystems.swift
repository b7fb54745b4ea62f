/// hvbench's own VMM: the VM modes are presets over two axes, the CPU (`--cpu kvm|emulator`) and
/// the devices (`--io legacy|virtio`).
extension SystemDefinition {
    public static let hardwareAssist = SystemDefinition(
        name: "hardware-assist", runner: .vm(cpu: .kvm, devices: .legacy), summary: "KVM + emulated e1000 and IDE",
        colour: "#f58518", runByDefault: true, comparedWith: ["full-emulation", "qemu-kvm"])

    public static let paravirtIO = SystemDefinition(
        name: "paravirt-io", runner: .vm(cpu: .kvm, devices: .virtio), summary: "KVM + virtio-net and virtio-blk",
        colour: "#54a24b", runByDefault: true, comparedWith: ["hardware-assist", "qemu-kvm-virtio"])

    /// The heirs of VMI and Xen PV: KVM's paravirtual CPU interface on top of paravirt-io.
    public static let paravirt = SystemDefinition(
        name: "paravirt", runner: .vm(cpu: .kvmParavirtual, devices: .virtio),
        summary: "KVM presenting its paravirtual CPU interface (the guest takes kvmclock and PV EOI) + virtio", colour: "#2ca02c",
        comparedWith: ["paravirt-io"])

    public static let fullEmulation = SystemDefinition(
        name: "full-emulation", runner: .vm(cpu: .emulator(nil), devices: .legacy),
        summary: "hvbench's x86-64 emulator (--emulator) + emulated e1000 and IDE", colour: "#e45756", runByDefault: true,
        comparedWith: ["qemu-tcg"])

    /// The fourth combination of the two axes (`--cpu emulator --io virtio`); not in `--mode all`.
    public static let emulatorVirtio = SystemDefinition(
        name: "emulator-virtio", runner: .vm(cpu: .emulator(nil), devices: .virtio),
        summary: "hvbench's x86-64 emulator + virtio (--cpu emulator --io virtio)", colour: "#eeca3b")

    /// Full emulation by the reference interpreter alone, whatever `--emulator` says: `hvbench
    /// mips` runs it beside the translator in one interleaved run.
    public static let fullEmulationInterpret = SystemDefinition(
        name: "full-emulation-interpret", runner: .vm(cpu: .emulator(.interpret), devices: .legacy),
        summary: "hvbench's reference interpreter alone + emulated e1000 and IDE", colour: "#fabfd2",
        comparedWith: ["full-emulation"])
}

extension SystemDefinition {
    /// This emulator system run by one emulator whatever `--emulator` says, as a system of its
    /// own named "<name>-<emulator>" (the registered one where there is one); nil for a system
    /// the emulator does not run.
    public func pinning(_ emulator: EmulatorKind) -> SystemDefinition? {
        guard case .vm(.emulator, let devices) = runner else { return nil }
        let name = "\(self.name)-\(emulator.rawValue)"
        return SystemRegistry.named(name)
            ?? SystemDefinition(
                name: name, runner: .vm(cpu: .emulator(emulator), devices: devices),
                summary: "\(summary), \(emulator.rawValue) only", colour: colour)
    }
}
