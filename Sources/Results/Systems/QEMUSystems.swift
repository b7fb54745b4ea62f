/// QEMU running the same guest image, with the devices of the hvbench system it is compared with.
extension SystemDefinition {
    public static let qemuTCG = SystemDefinition(
        name: "qemu-tcg", runner: .qemu(kvm: false, devices: .legacy), summary: "QEMU with TCG + e1000 and IDE",
        colour: "#b279a2")

    public static let qemuKVM = SystemDefinition(
        name: "qemu-kvm", runner: .qemu(kvm: true, devices: .legacy), summary: "QEMU with KVM + e1000 and IDE",
        colour: "#9d755d")

    public static let qemuKVMVirtio = SystemDefinition(
        name: "qemu-kvm-virtio", runner: .qemu(kvm: true, devices: .virtio),
        summary: "QEMU with KVM + virtio-net-pci and virtio-blk-pci", colour: "#72b7b2")
}
