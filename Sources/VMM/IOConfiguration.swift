import Machine
import VMTypes

/// Which I/O devices a VM gets: emulated legacy ones (e1000 + IDE) or paravirtual ones
/// (virtio-net + virtio-blk), each with its backend, and a virtio-balloon (whatever the set:
/// like VMware's, the balloon is a paravirtual driver beside emulated devices too).
public struct IOConfiguration {
    public var kind: DeviceSet
    public var disk: DiskImage?
    /// The NIC's backend: the in-VMM peer, or a TAP device into the host kernel.
    public var peer: (any NetworkBackend)?
    /// Whether an engine that can (KVM) takes doorbells on an I/O thread through ioeventfds
    /// instead of as vCPU exits.
    public var ioThread: Bool
    /// How long that thread polls for doorbells before it sleeps (see `DoorbellPolling`).
    public var ioThreadPollMicroseconds: UInt64
    /// A virtio-balloon, and the host's handle on it; nil: none.
    public var balloon: BalloonControl?

    public init(
        kind: DeviceSet, disk: DiskImage?, peer: (any NetworkBackend)?, ioThread: Bool = true,
        ioThreadPollMicroseconds: UInt64 = DoorbellPolling.defaultLimitMicroseconds
    ) {
        self.kind = kind
        self.disk = disk
        self.peer = peer
        self.ioThread = ioThread
        self.ioThreadPollMicroseconds = ioThreadPollMicroseconds
    }

    /// The devices, in the order they are placed: the one list a new device model joins.
    public func devices(on platform: Platform) -> [any Device] {
        let memory = platform.memory
        let mmio = platform.mmioBus
        let nic: (any Device)?
        let storage: (any Device)?
        switch kind {
        case .legacy:
            nic = peer.map { E1000(memory: memory, mmio: mmio, peer: $0) }
            storage = disk.map { IDEDisk(disk: $0) }
        case .virtio:
            nic = peer.map { VirtioPCITransport(model: VirtioNet(peer: $0), memory: memory, mmio: mmio) }
            storage = disk.map { VirtioPCITransport(model: VirtioBlock(disk: $0), memory: memory, mmio: mmio) }
        }
        var balloonDevice: VirtioPCITransport?
        if let balloon {
            let model = VirtioBalloon(memory: memory)
            balloonDevice = VirtioPCITransport(model: model, memory: memory, mmio: mmio)
            balloon.attach(balloonDevice!, model)
        }
        return [nic, storage, balloonDevice].compactMap { $0 }
    }
}
