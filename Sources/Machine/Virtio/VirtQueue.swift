import Synchronization

/// A malformed request from the guest. The device that meets one marks itself broken (virtio
/// DEVICE_NEEDS_RESET) with this reason; the VMM goes on.
public struct VirtQueueError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One buffer of a descriptor chain, already checked to lie inside guest RAM: `bytes` is that
/// checked view, so devices use it directly instead of validating the range again.
public struct VirtBuffer {
    public let address: UInt64
    public let bytes: UnsafeMutableRawBufferPointer
    public let deviceWritable: Bool
    public var length: Int { bytes.count }
}

/// A split virtqueue (virtio 1.x, section 2.7). Every address the guest supplies is checked
/// against guest RAM before use, chains are bounded by the queue size (so a loop cannot spin
/// the VMM), and device-readable buffers must come before device-writable ones.
public final class VirtQueue {
    public let maximumSize: UInt16
    public var size: UInt16
    public var descriptorTable: UInt64 = 0
    public var driverRing: UInt64 = 0
    public var deviceRing: UInt64 = 0
    public var enabled = false
    public private(set) var lastAvailableIndex: UInt16 = 0
    public private(set) var usedIndex: UInt16 = 0
    /// The used index when the device last decided about an interrupt (vhost's signalled_used).
    private var signalledUsedIndex: UInt16 = 0

    static let next: UInt16 = 1
    static let write: UInt16 = 2
    static let indirect: UInt16 = 4

    public init(maximumSize: UInt16) {
        self.maximumSize = maximumSize
        self.size = maximumSize
    }

    public func reset() {
        size = maximumSize
        descriptorTable = 0
        driverRing = 0
        deviceRing = 0
        enabled = false
        lastAvailableIndex = 0
        usedIndex = 0
        signalledUsedIndex = 0
    }

    /// Checks the rings lie in guest RAM; called when the driver enables the queue.
    public func validateLayout(_ memory: GuestMemory) throws {
        guard size > 0, size <= maximumSize, size & (size - 1) == 0 else {
            throw VirtQueueError("queue size \(size) is not a power of two in 1...\(maximumSize)")
        }
        let n = Int(size)
        for (name, address, length, alignment) in [
            ("descriptor table", descriptorTable, 16 * n, UInt64(16)), ("driver ring", driverRing, 6 + 2 * n, 2),
            ("device ring", deviceRing, 6 + 8 * n, 4),
        ] {
            guard address % alignment == 0 else {
                throw VirtQueueError("\(name) at 0x\(String(address, radix: 16)) is misaligned")
            }
            do { _ = try memory.bytes(at: address, count: length) } catch {
                throw VirtQueueError("\(name) at 0x\(String(address, radix: 16)) is outside guest RAM")
            }
        }
    }

    /// The driver's avail.idx as it is in guest memory now.
    public func availableIndex(_ memory: GuestMemory) throws -> UInt16 {
        try memory.readValue(UInt16.self, at: driverRing + 2)
    }

    /// Whether the driver has made a chain available that the device has not taken yet.
    public func hasAvailable(_ memory: GuestMemory) throws -> Bool {
        let pending = try availableIndex(memory) &- lastAvailableIndex
        guard pending <= size else {
            throw VirtQueueError(
                "driver ring index moved by \(pending), more than the queue size \(size) (avail.idx \(lastAvailableIndex &+ pending), device at \(lastAvailableIndex), used.idx \(usedIndex))"
            )
        }
        return pending > 0
    }

    /// Takes the next available chain into `buffers` (reused, so the hot path does not
    /// allocate) and returns its head index, or nil when none is available.
    public func popChain(_ memory: GuestMemory, into buffers: inout [VirtBuffer]) throws -> UInt16? {
        guard try hasAvailable(memory) else { return nil }
        // The driver wrote the ring entry before it moved avail.idx; read them in that order too
        // (the device runs on another thread than the vCPU: an I/O thread, or a backend's).
        atomicMemoryFence(ordering: .acquiring)
        let slot = UInt64(lastAvailableIndex % size)
        let head = try memory.readValue(UInt16.self, at: driverRing + 4 + 2 * slot)
        lastAvailableIndex &+= 1
        buffers.removeAll(keepingCapacity: true)
        var index = head
        var sawWritable = false
        for _ in 0..<Int(size) {
            guard index < size else { throw VirtQueueError("descriptor index \(index) outside a queue of \(size)") }
            let entry = try memory.bytes(at: descriptorTable + 16 * UInt64(index), count: 16)
            let address = UInt64(littleEndian: entry.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            let length = UInt32(littleEndian: entry.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            let flags = UInt16(littleEndian: entry.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
            let following = UInt16(littleEndian: entry.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
            guard flags & Self.indirect == 0 else {
                throw VirtQueueError("indirect descriptor, but VIRTIO_F_INDIRECT_DESC was not offered")
            }
            guard length > 0 else { throw VirtQueueError("descriptor \(index) has length 0") }
            let view: UnsafeMutableRawBufferPointer
            do { view = try memory.bytes(at: address, count: Int(length)) } catch {
                throw VirtQueueError("descriptor \(index) points outside guest RAM (0x\(String(address, radix: 16)) + \(length))")
            }
            let writable = flags & Self.write != 0
            guard !(sawWritable && !writable) else {
                throw VirtQueueError("device-readable descriptor \(index) after a device-writable one")
            }
            sawWritable = sawWritable || writable
            buffers.append(VirtBuffer(address: address, bytes: view, deviceWritable: writable))
            guard flags & Self.next != 0 else { return head }
            index = following
        }
        throw VirtQueueError("descriptor chain from \(head) is longer than the queue (a loop?)")
    }

    /// Whether the used buffers added since the last call should interrupt the driver: with
    /// event index, when the used index passed the driver's used_event (virtio 1.x §2.7.10);
    /// without, unless the driver set VIRTQ_AVAIL_F_NO_INTERRUPT.
    public func usedBuffersNeedInterrupt(_ memory: GuestMemory, eventIndex: Bool) throws -> Bool {
        guard usedIndex != signalledUsedIndex else { return false }
        let previous = signalledUsedIndex
        signalledUsedIndex = usedIndex
        if eventIndex {
            let usedEvent = try memory.readValue(UInt16.self, at: driverRing + 4 + 2 * UInt64(size))
            return usedIndex &- usedEvent &- 1 < usedIndex &- previous
        }
        return try memory.readValue(UInt16.self, at: driverRing) & 1 == 0
    }

    /// Publishes avail_event: the driver need not notify until it makes this index available.
    public func publishAvailableEvent(_ memory: GuestMemory) throws {
        try memory.writeValue(lastAvailableIndex, at: deviceRing + 4 + 8 * UInt64(size))
    }

    /// Doorbells off while the device polls the driver ring itself (virtio 1.x §2.7.7, 2.7.10):
    /// without event index VIRTQ_USED_F_NO_NOTIFY in the used ring's flags; with it, avail_event
    /// one behind what the device has taken, so no index the driver makes available reaches it
    /// (the driver rings when its new index passes avail_event). On: the flag cleared or
    /// avail_event published as usual.
    public func setDoorbells(_ enabled: Bool, eventIndex: Bool, _ memory: GuestMemory) throws {
        if eventIndex {
            let event = enabled ? lastAvailableIndex : lastAvailableIndex &- 1
            try memory.writeValue(event, at: deviceRing + 4 + 8 * UInt64(size))
        } else {
            try memory.writeValue(UInt16(enabled ? 0 : 1), at: deviceRing)
        }
    }

    /// Returns a chain to the driver with the number of bytes the device wrote into it.
    public func pushUsed(_ memory: GuestMemory, head: UInt16, written: Int) throws {
        let slot = UInt64(usedIndex % size)
        try memory.writeValue(UInt32(head), at: deviceRing + 4 + 8 * slot)
        try memory.writeValue(UInt32(written), at: deviceRing + 8 + 8 * slot)
        usedIndex &+= 1
        // The element must be visible before the index that publishes it.
        atomicMemoryFence(ordering: .releasing)
        try memory.writeValue(usedIndex, at: deviceRing + 2)
    }
}
