/// virtio-blk (device type 2) on a raw image: read, write, flush and get-id. Requests that
/// reach past the disk complete with VIRTIO_BLK_S_IOERR, as the specification says; malformed
/// chains break the device (the transport records why).
public final class VirtioBlock: VirtioDeviceModel {
    public let name = "blk"
    public let deviceID: UInt16 = 2
    public let pciClass: (UInt8, UInt8) = (0x01, 0x00)
    public let deviceFeatures: UInt64 = 1 << 9  // VIRTIO_BLK_F_FLUSH
    public let queueSizes: [UInt16] = [256]
    public let disk: DiskImage
    private var chain: [VirtBuffer] = []
    public private(set) var requests = 0

    static let typeIn: UInt32 = 0
    static let typeOut: UInt32 = 1
    static let typeFlush: UInt32 = 4
    static let typeGetID: UInt32 = 8
    static let statusOK: UInt8 = 0
    static let statusIOError: UInt8 = 1
    static let statusUnsupported: UInt8 = 2

    public init(disk: DiskImage) {
        self.disk = disk
        chain.reserveCapacity(64)
    }

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        // capacity (le64, in 512-byte sectors) at offset 0; everything else reads as zero.
        for index in data.indices where offset + index < 8 {
            data[index] = UInt8(truncatingIfNeeded: disk.sectors >> (8 * UInt64(offset + index)))
        }
    }

    public func reset() {}

    public func queueNotified(_ index: Int, _ transport: VirtioPCITransport) throws {
        let queue = transport.queues[index]
        let memory = transport.memory
        while let head = try queue.popChain(memory, into: &chain) {
            requests += 1
            guard chain.count >= 2, !chain[0].deviceWritable, chain[0].length >= 16, let status = chain.last,
                status.deviceWritable,
                status.length >= 1
            else {
                throw VirtQueueError("virtio-blk request needs a 16-byte readable header and a writable status byte")
            }
            let type = UInt32(littleEndian: chain[0].bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
            let sector = UInt64(littleEndian: chain[0].bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            let data = chain[1..<(chain.count - 1)]
            var written = 0
            var result = Self.statusOK
            switch type {
            case Self.typeIn, Self.typeOut:
                let reading = type == Self.typeIn
                guard data.allSatisfy({ $0.deviceWritable == reading }) else {
                    throw VirtQueueError("virtio-blk \(reading ? "read" : "write") with data buffers of the wrong direction")
                }
                let total = data.reduce(0) { $0 + $1.length }
                guard total % DiskImage.sectorSize == 0, disk.contains(sector: sector, count: total / DiskImage.sectorSize) else {
                    result = Self.statusIOError
                    break
                }
                var offset = sector * UInt64(DiskImage.sectorSize)
                do {
                    for buffer in data {
                        let bytes = buffer.bytes
                        if reading {
                            try disk.read(into: bytes, at: offset)
                        } else {
                            try disk.write(from: UnsafeRawBufferPointer(bytes), at: offset)
                        }
                        offset += UInt64(buffer.length)
                    }
                    if reading { written = total }
                } catch {
                    result = Self.statusIOError
                }
            case Self.typeFlush:
                do { try disk.flush() } catch { result = Self.statusIOError }
            case Self.typeGetID:
                guard let buffer = data.first, buffer.deviceWritable else {
                    throw VirtQueueError("virtio-blk get-id without a writable buffer")
                }
                let id = Array("hvbench-virtio-blk".utf8) + [UInt8](repeating: 0, count: 2)
                let count = min(20, buffer.length)
                buffer.bytes.copyBytes(from: id.prefix(count))
                written = count
            default:
                result = Self.statusUnsupported
            }
            status.bytes[0] = result
            try queue.pushUsed(memory, head: head, written: written + 1)
        }
    }
}
