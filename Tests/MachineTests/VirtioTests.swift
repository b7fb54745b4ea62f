import Foundation
import Testing

@testable import Machine

/// A driver's view of one split virtqueue in guest memory, for building requests in tests.
struct TestQueue {
    let memory: GuestMemory
    let queue: VirtQueue
    var desc: UInt64 { queue.descriptorTable }
    var avail: UInt64 { queue.driverRing }
    var used: UInt64 { queue.deviceRing }

    /// The rings at `base` (descriptors), + 0x1000 (driver ring), + 0x2000 (device ring).
    init(memory: GuestMemory, size: UInt16 = 8, base: UInt64 = 0x10000) throws {
        self.memory = memory
        queue = VirtQueue(maximumSize: size)
        queue.descriptorTable = base
        queue.driverRing = base + 0x1000
        queue.deviceRing = base + 0x2000
        try memory.bytes(at: base, count: 0x3000).initializeMemory(as: UInt8.self, repeating: 0)
        try queue.validateLayout(memory)
        queue.enabled = true
    }

    func descriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16 = 0) throws {
        let entry = desc + 16 * UInt64(index)
        try memory.writeValue(address, at: entry)
        try memory.writeValue(length, at: entry + 8)
        try memory.writeValue(flags, at: entry + 12)
        try memory.writeValue(next, at: entry + 14)
    }

    func offer(_ head: UInt16) throws {
        let index = try memory.readValue(UInt16.self, at: avail + 2)
        try memory.writeValue(head, at: avail + 4 + 2 * UInt64(index % queue.size))
        try memory.writeValue(index &+ 1, at: avail + 2)
    }

    func usedEntries() throws -> [(id: UInt32, length: UInt32)] {
        let count = try memory.readValue(UInt16.self, at: used + 2)
        return try (0..<count).map {
            (
                try memory.readValue(UInt32.self, at: used + 4 + 8 * UInt64($0)),
                try memory.readValue(UInt32.self, at: used + 8 + 8 * UInt64($0))
            )
        }
    }
}

@Suite struct VirtQueueTests {
    let memory = try! GuestMemory(size: 4 << 20)

    @Test func walksAValidChain() throws {
        let q = try TestQueue(memory: memory)
        try q.descriptor(0, address: 0x20000, length: 16, flags: 1, next: 3)
        try q.descriptor(3, address: 0x21000, length: 512, flags: 1 | 2, next: 5)
        try q.descriptor(5, address: 0x22000, length: 1, flags: 2)
        try q.offer(0)
        var buffers: [VirtBuffer] = []
        let head = try q.queue.popChain(memory, into: &buffers)
        #expect(head == 0)
        #expect(buffers.map(\.length) == [16, 512, 1])
        #expect(buffers.map(\.deviceWritable) == [false, true, true])
        #expect(try q.queue.popChain(memory, into: &buffers) == nil)
        try q.queue.pushUsed(memory, head: 0, written: 513)
        #expect(try q.usedEntries().map(\.length) == [513])
    }

    func rejects(_ build: (TestQueue) throws -> Void, _ expected: String) throws {
        let q = try TestQueue(memory: memory)
        try build(q)
        var buffers: [VirtBuffer] = []
        do {
            _ = try q.queue.popChain(memory, into: &buffers)
            Issue.record("accepted a malformed chain (\(expected))")
        } catch let error as VirtQueueError {
            #expect(error.description.contains(expected), "\(error)")
        }
    }

    @Test func rejectsHostileChains() throws {
        try rejects(
            {
                try $0.descriptor(0, address: 0xFFFF_F000, length: 4096, flags: 0); try $0.offer(0)
            }, "outside guest RAM")
        try rejects(
            {
                try $0.descriptor(0, address: (4 << 20) - 8, length: 64, flags: 0); try $0.offer(0)
            }, "outside guest RAM")
        try rejects(
            {
                try $0.descriptor(0, address: UInt64.max - 4, length: 16, flags: 0); try $0.offer(0)
            }, "outside guest RAM")
        try rejects(
            {
                try $0.descriptor(0, address: 0x20000, length: 0, flags: 0); try $0.offer(0)
            }, "length 0")
        try rejects(
            { q in
                try q.descriptor(0, address: 0x20000, length: 8, flags: 1, next: 1)
                try q.descriptor(1, address: 0x20000, length: 8, flags: 1, next: 0)  // a loop
                try q.offer(0)
            }, "longer than the queue")
        try rejects(
            {
                try $0.descriptor(0, address: 0x20000, length: 8, flags: 1, next: 200); try $0.offer(0)
            }, "outside a queue")
        try rejects({ try $0.offer(9) }, "outside a queue")
        try rejects(
            {
                try $0.descriptor(0, address: 0x20000, length: 8, flags: 4); try $0.offer(0)
            }, "indirect")
        try rejects(
            { q in
                try q.descriptor(0, address: 0x20000, length: 8, flags: 1 | 2, next: 1)
                try q.descriptor(1, address: 0x21000, length: 8, flags: 0)
                try q.offer(0)
            }, "after a device-writable")
        try rejects({ q in try q.memory.writeValue(UInt16(500), at: q.avail + 2) }, "more than the queue size")
    }

    @Test func refusesRingsOutsideMemoryOrMisaligned() throws {
        let queue = VirtQueue(maximumSize: 8)
        queue.descriptorTable = (4 << 20) - 16
        queue.driverRing = 0x1000
        queue.deviceRing = 0x2000
        #expect(throws: VirtQueueError.self) { try queue.validateLayout(memory) }
        queue.descriptorTable = 0x1008
        #expect(throws: VirtQueueError.self) { try queue.validateLayout(memory) }
        queue.descriptorTable = 0x1000
        queue.size = 6
        #expect(throws: VirtQueueError.self) { try queue.validateLayout(memory) }
    }
}

/// Drives the transport's common configuration the way a driver does.
struct TransportDriver {
    let transport: VirtioPCITransport
    func write(_ offset: Int, _ value: UInt64, width: Int = 4) {
        var bytes = (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        bytes.withUnsafeMutableBytes { transport.write(offset: UInt64(offset), from: UnsafeRawBufferPointer($0)) }
    }
    func read(_ offset: Int, width: Int = 4) -> UInt64 {
        var bytes = [UInt8](repeating: 0, count: width)
        bytes.withUnsafeMutableBytes { transport.read(offset: UInt64(offset), into: $0) }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    /// Negotiates VERSION_1 (+ extra), sets up queue `index` at the TestQueue layout, DRIVER_OK.
    func bringUp(queues: [TestQueue], extra: UInt64 = 0) {
        write(0x14, 0, width: 1)
        write(0x14, 3, width: 1)
        write(0x08, 0)
        write(0x0C, extra & 0xFFFF_FFFF)
        write(0x08, 1)
        write(0x0C, 1)
        write(0x14, 11, width: 1)
        for (index, q) in queues.enumerated() {
            write(0x16, UInt64(index), width: 2)
            write(0x18, UInt64(q.queue.size), width: 2)
            write(0x20, q.desc)
            write(0x28, q.avail)
            write(0x30, q.used)
            write(0x1C, 1, width: 2)
        }
        write(0x14, 15, width: 1)
    }
}

@Suite struct VirtioDeviceTests {
    func makeBlock() throws -> (GuestMemory, VirtioPCITransport, TransportDriver, DiskImage) {
        let memory = try GuestMemory(size: 4 << 20)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("vblk-\(UUID().uuidString).img").path
        let disk = try DiskImage.create(path: path, size: 1 << 20)
        let transport = VirtioPCITransport(model: VirtioBlock(disk: disk), memory: memory, mmio: IOBus())
        _ = transport.configuration.write(offset: 4, count: 2, value: 0x6)  // memory + bus master
        return (memory, transport, TransportDriver(transport: transport), disk)
    }

    @Test func featureNegotiationNeedsVersionOne() throws {
        let (_, transport, driver, disk) = try makeBlock()
        defer { try? FileManager.default.removeItem(atPath: disk.path) }
        driver.write(0x00, 1)
        #expect(driver.read(0x04) & 1 == 1)  // VIRTIO_F_VERSION_1 offered
        driver.write(0x14, 3, width: 1)
        driver.write(0x08, 1)
        driver.write(0x0C, 0)  // driver refuses VERSION_1
        driver.write(0x14, 11, width: 1)
        #expect(transport.status & 8 == 0)  // FEATURES_OK not accepted
        #expect(driver.read(0x2000, width: 4) == 2048)  // capacity in sectors
    }

    @Test func blockReadWriteFlushAndErrors() throws {
        let (memory, transport, driver, disk) = try makeBlock()
        defer { try? FileManager.default.removeItem(atPath: disk.path) }
        let q = try TestQueue(memory: memory, size: 16)
        driver.bringUp(queues: [q])
        func request(type: UInt32, sector: UInt64, data: UInt64, length: UInt32, writable: Bool, head: UInt16) throws -> UInt8 {
            let header: UInt64 = 0x30000 + UInt64(head) * 0x100
            try memory.writeValue(type, at: header)
            try memory.writeValue(sector, at: header + 8)
            try q.descriptor(head, address: header, length: 16, flags: 1, next: head + 1)
            try q.descriptor(head + 1, address: data, length: length, flags: 1 | (writable ? 2 : 0), next: head + 2)
            try q.descriptor(head + 2, address: header + 0x80, length: 1, flags: 2)
            try q.offer(head)
            driver.write(0x3000, 0, width: 2)  // notify queue 0
            return try memory.readValue(UInt8.self, at: header + 0x80)
        }
        try memory.write([UInt8](repeating: 0xAB, count: 1024), at: 0x40000)
        #expect(try request(type: 1, sector: 3, data: 0x40000, length: 1024, writable: false, head: 0) == 0)
        #expect(try request(type: 0, sector: 3, data: 0x50000, length: 1024, writable: true, head: 3) == 0)
        #expect(try memory.read(at: 0x50000, count: 1024) == [UInt8](repeating: 0xAB, count: 1024))
        #expect(try request(type: 4, sector: 0, data: 0x60000, length: 512, writable: false, head: 6) == 0)  // flush
        #expect(try q.usedEntries().count == 3)
        #expect(transport.notifications == 3)
        // Past the end of the disk: an I/O error for this request, not a broken device.
        let q2status = try request(type: 0, sector: 2047, data: 0x50000, length: 1024, writable: true, head: 0)
        #expect(q2status == 1)
        #expect(transport.brokenReason == nil)
    }

    @Test func aHostileChainBreaksTheDeviceAndNothingElse() throws {
        let (memory, transport, driver, disk) = try makeBlock()
        defer { try? FileManager.default.removeItem(atPath: disk.path) }
        let q = try TestQueue(memory: memory)
        driver.bringUp(queues: [q])
        try q.descriptor(0, address: 0x7FFF_F000, length: 4096, flags: 0)
        try q.offer(0)
        driver.write(0x3000, 0, width: 2)
        #expect(transport.brokenReason?.contains("outside guest RAM") == true)
        #expect(transport.status & 0x40 != 0)  // DEVICE_NEEDS_RESET
        // Further notifications are ignored until the driver resets the device.
        driver.write(0x3000, 0, width: 2)
        driver.write(0x14, 0, width: 1)
        #expect(transport.brokenReason == nil && transport.status == 0)
    }

    @Test func dmaNeedsBusMastering() throws {
        let (memory, transport, driver, disk) = try makeBlock()
        defer { try? FileManager.default.removeItem(atPath: disk.path) }
        let q = try TestQueue(memory: memory)
        driver.bringUp(queues: [q])
        _ = transport.configuration.write(offset: 4, count: 2, value: 0x2)  // memory only
        try q.offer(0)
        driver.write(0x3000, 0, width: 2)
        #expect(transport.brokenReason?.contains("bus mastering") == true)
    }

    @Test func netTransmitsToThePeerAndReceivesFromIt() throws {
        let memory = try GuestMemory(size: 4 << 20)
        let peer = NetworkPeer(mode: .echo)
        let transport = VirtioPCITransport(model: VirtioNet(peer: peer), memory: memory, mmio: IOBus())
        _ = transport.configuration.write(offset: 4, count: 2, value: 0x6)
        let driver = TransportDriver(transport: transport)
        let rx = try TestQueue(memory: memory)
        let txQueue = VirtQueue(maximumSize: 8)
        txQueue.descriptorTable = 0x13000
        txQueue.driverRing = 0x14000
        txQueue.deviceRing = 0x15000
        driver.bringUp(queues: [rx], extra: 1 << 5)
        driver.write(0x16, 1, width: 2)
        driver.write(0x18, 8, width: 2)
        driver.write(0x20, 0x13000)
        driver.write(0x28, 0x14000)
        driver.write(0x30, 0x15000)
        driver.write(0x1C, 1, width: 2)
        #expect(driver.read(0x2000, width: 4) == 0x6800_5452)  // MAC bytes 52:54:00:68
        // A receive buffer, then a valid patterned 64-byte frame to transmit.
        try rx.descriptor(0, address: 0x60000, length: 2048, flags: 2)
        try rx.offer(0)
        let frame = NetworkPeer.frame(sequence: 7, length: 64)
        try memory.write([UInt8](repeating: 0, count: 12) + frame, at: 0x70000)
        let tx = TestQueue(memory: memory, queue: txQueue)
        try tx.descriptor(0, address: 0x70000, length: 76, flags: 0)
        try tx.offer(0)
        driver.write(0x3004, 1, width: 2)  // notify queue 1 (notify_off 1 x multiplier 4)
        #expect(transport.brokenReason == nil, "\(transport.brokenReason ?? "")")
        #expect(peer.framesFromGuest == 1 && peer.errors.isEmpty, "\(peer.errors)")
        #expect(try rx.usedEntries().first?.length == 76)
        #expect(try memory.read(at: 0x60000 + 12, count: 64) == frame)
    }
}

extension TestQueue {
    init(memory: GuestMemory, queue: VirtQueue) {
        self.memory = memory
        self.queue = queue
        self.queue.enabled = true
    }
}
