/// Which I/O devices a VM gets: emulated legacy ones (e1000 + IDE) or paravirtual ones
/// (virtio-net + virtio-blk), each with its backend.
public struct IOConfiguration {
    public enum Kind: String, Sendable { case legacy, virtio }
    public var kind: Kind
    public var disk: DiskImage?
    public var peer: NetworkPeer?

    public init(kind: Kind, disk: DiskImage?, peer: NetworkPeer?) {
        self.kind = kind
        self.disk = disk
        self.peer = peer
    }
}

extension VirtualMachine {
    /// Adds the PCI bus and the devices of `io`. Devices that a guest breaks report why through
    /// `brokenDevices`.
    public func attach(_ io: IOConfiguration) throws {
        let pci = PCIBus(mmio: mmioBus)
        try portBus.insert(pci, at: PCIBus.base, length: 8)
        switch io.kind {
        case .legacy:
            if let peer = io.peer {
                let nic = E1000(memory: memory, mmio: mmioBus, peer: peer)
                pci.plug(nic)
                ioDevices.append(.e1000(nic))
            }
            if let disk = io.disk {
                let ide = IDEDisk(disk: disk)
                try portBus.insert(ide.commandBlock, at: IDEDisk.commandBase, length: 8)
                try portBus.insert(ide.controlBlock, at: IDEDisk.controlPort, length: 1)
                ioDevices.append(.ide(ide))
            }
        case .virtio:
            if let peer = io.peer {
                let net = VirtioPCITransport(model: VirtioNet(peer: peer), memory: memory, mmio: mmioBus)
                pci.plug(net)
                ioDevices.append(.virtio(net))
            }
            if let disk = io.disk {
                let block = VirtioPCITransport(model: VirtioBlock(disk: disk), memory: memory, mmio: mmioBus)
                pci.plug(block)
                ioDevices.append(.virtio(block))
            }
        }
    }

    /// Doorbell writes (virtio notifications, e1000 tail registers) so far.
    public var notifications: Int {
        ioDevices.reduce(0) { total, device in
            switch device {
            case .virtio(let transport): return total + transport.notifications
            case .e1000(let nic): return total + nic.doorbells
            case .ide: return total
            }
        }
    }

    /// Devices the guest drove into an error state, with the reason.
    public var brokenDevices: [String] {
        ioDevices.compactMap { device in
            switch device {
            case .virtio(let transport):
                return transport.brokenReason.map { "virtio-\(transport.model.deviceID == 1 ? "net" : "blk"): \($0)" }
            case .e1000(let nic): return nic.brokenReason.map { "e1000: \($0)" }
            case .ide: return nil
            }
        }
    }
}

public enum AttachedDevice {
    case e1000(E1000)
    case ide(IDEDisk)
    case virtio(VirtioPCITransport)
}
