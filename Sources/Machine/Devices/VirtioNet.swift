/// virtio-net (device type 1): queue 0 receives, queue 1 transmits, each buffer starting with
/// the 12-byte virtio_net_hdr. Frames go to and come from its `NetworkBackend`.
public final class VirtioNet: VirtioDeviceModel {
    public let name = "net"
    public let deviceID: UInt16 = 1
    public let pciClass: (UInt8, UInt8) = (0x02, 0x00)
    public let deviceFeatures: UInt64 = 1 << 5  // VIRTIO_NET_F_MAC
    public let queueSizes: [UInt16] = [256, 256]
    public let peer: any NetworkBackend
    public let mac: [UInt8]
    static let headerLength = 12
    private var chain: [VirtBuffer] = []
    private var frame = [UInt8](repeating: 0, count: 65550)

    public init(peer: any NetworkBackend, mac: [UInt8] = [0x52, 0x54, 0x00, 0x68, 0x76, 0x01]) {
        self.peer = peer
        self.mac = mac
        chain.reserveCapacity(64)
    }

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        for index in data.indices where offset + index < 6 { data[index] = mac[offset + index] }
    }

    public func reset() {}

    /// Frames that arrive on their own (a TAP) fill the receive queue. Where an I/O thread serves
    /// the queues (KVM's ioeventfds), it also reads the backend and fills the queue under the
    /// transport's lock, and the guest polling its used ring sees the frame without a vCPU exit
    /// (as QEMU's main loop delivers); a backend that cannot be read there fills it from its own
    /// thread, under the same lock; otherwise the vCPU thread does, between exits.
    public func connect(_ transport: VirtioPCITransport, timers: DeviceTimers) {
        let reference = UncheckedReference(transport)
        if let router = transport.ioThread,
            peer.receive(
                on: router,
                {
                    let transport = reference.value
                    transport.configurationAccess { transport.notify(0) }
                })
        {
            return
        }
        peer.onArrival {
            let transport = reference.value
            if transport.isServedByIOThread {
                transport.configurationAccess { transport.notify(0) }
            } else {
                timers.post { transport.configurationAccess { transport.notify(0) } }
            }
        }
    }

    public func queueNotified(_ index: Int, _ transport: VirtioPCITransport) throws {
        if index == 1 { try transmit(transport) }
        try deliver(transport)
    }

    private func transmit(_ transport: VirtioPCITransport) throws {
        let queue = transport.queues[1]
        let memory = transport.memory
        while let head = try queue.popChain(memory, into: &chain) {
            var length = 0
            for buffer in chain {
                guard !buffer.deviceWritable else { throw VirtQueueError("transmit buffer marked device-writable") }
                guard length + buffer.length <= frame.count else {
                    throw VirtQueueError("transmit chain longer than a 64 KiB frame")
                }
                let bytes = buffer.bytes
                frame.withUnsafeMutableBytes {
                    $0.baseAddress!.advanced(by: length).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                }
                length += buffer.length
            }
            guard length >= Self.headerLength else { throw VirtQueueError("transmit chain shorter than the virtio-net header") }
            frame.withUnsafeBytes { peer.received(UnsafeRawBufferPointer(rebasing: $0[Self.headerLength..<length])) }
            try queue.pushUsed(memory, head: head, written: 0)
        }
    }

    /// Fills posted receive buffers with frames the peer has for the guest.
    private func deliver(_ transport: VirtioPCITransport) throws {
        let queue = transport.queues[0]
        guard queue.enabled else { return }
        let memory = transport.memory
        while peer.hasFrameForGuest, let head = try queue.popChain(memory, into: &chain) {
            guard chain.count == 1, chain[0].deviceWritable, chain[0].length >= Self.headerLength + 60 else {
                throw VirtQueueError("receive buffers must be single writable descriptors of at least 72 bytes")
            }
            let buffer = chain[0].bytes
            for index in 0..<Self.headerLength { buffer[index] = 0 }
            buffer[10] = 1  // num_buffers
            guard let length = peer.frameForGuest(into: UnsafeMutableRawBufferPointer(rebasing: buffer[Self.headerLength...]))
            else {
                throw VirtQueueError("receive buffer of \(chain[0].length) bytes is too small for the next frame")
            }
            try queue.pushUsed(memory, head: head, written: Self.headerLength + length)
        }
    }
}
