import Foundation
import Synchronization
import Testing

@testable import Machine

/// An engine's I/O thread as the transport sees it: the routes it holds, and a way to ring one
/// from another thread the way KVM's ioeventfd + epoll thread does.
final class RecordingDoorbellRouter: DoorbellRouter, @unchecked Sendable {
    final class Route: DoorbellRoute, @unchecked Sendable {
        let address: UInt64
        let length: Int
        let handler: @Sendable (Int) -> Void
        var cancelled = false
        init(address: UInt64, length: Int, handler: @escaping @Sendable (Int) -> Void) {
            self.address = address
            self.length = length
            self.handler = handler
        }
        func cancel() { cancelled = true }
    }

    private(set) var routes: [Route] = []
    var active: [UInt64] { routes.filter { !$0.cancelled }.map(\.address) }

    func route(address: UInt64, length: Int, _ handler: @escaping @Sendable (Int) -> Void) -> DoorbellRoute? {
        let route = Route(address: address, length: length, handler: handler)
        routes.append(route)
        return route
    }

    /// Devices that asked for their queues to be polled.
    private(set) var pollers: [any QueuePoller] = []
    func poll(_ poller: any QueuePoller) -> DoorbellRoute? {
        pollers.append(poller)
        return Route(address: 0, length: 0) { _ in }
    }

    func shutdown() {}  // no thread of its own: `ring` runs each handler to completion
    var polledEvents: Int { 0 }

    /// Runs the handler of the active route at `address` on a thread of its own and waits.
    func ring(_ address: UInt64, writes: Int = 1) throws {
        let route = try #require(routes.first { $0.address == address && !$0.cancelled })
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            route.handler(writes)
            done.signal()
        }
        thread.start()
        done.wait()
    }
}

@Suite struct DoorbellRoutingTests {
    let memory: GuestMemory
    let router = RecordingDoorbellRouter()
    let platform: Platform
    let bus: PCIBus
    let diskPath = FileManager.default.temporaryDirectory.appendingPathComponent("doorbell-\(UUID().uuidString).img").path

    init() throws {
        memory = try GuestMemory(size: 4 << 20)
        platform = Platform(memory: memory, portBus: IOBus(), mmioBus: IOBus(), doorbells: router)
        bus = try platform.pci()
    }

    func setConfig(_ slot: Int, _ offset: Int, _ value: UInt32, width: Int = 4) {
        write(bus, 0, 0x8000_0000 | UInt64(slot) << 11 | UInt64(offset & ~3))
        write(bus, 4 + UInt64(offset & 3), UInt64(value), width: width)
    }

    func config(_ slot: Int, _ offset: Int) -> UInt32 {
        write(bus, 0, 0x8000_0000 | UInt64(slot) << 11 | UInt64(offset))
        return UInt32(read(bus, 4))
    }

    /// A virtio-blk transport in slot 1 (the first after the host bridge).
    func makeBlock() throws -> (VirtioPCITransport, Int) {
        let disk = try DiskImage.create(path: diskPath, size: 1 << 20)
        let transport = VirtioPCITransport(model: VirtioBlock(disk: disk), memory: memory, mmio: platform.mmioBus)
        try transport.attach(to: platform)
        try #require(config(1, 0) == 0x1042_1AF4)
        return (transport, 1)
    }

    @Test func notifyAddressesAreRoutedWhileTheBARIsMappedAndFollowItsMoves() throws {
        defer { try? FileManager.default.removeItem(atPath: diskPath) }
        let (transport, slot) = try makeBlock()
        #expect(router.routes.isEmpty, "nothing routed before the BAR is placed")
        setConfig(slot, 0x10, 0xE000_0000)
        setConfig(slot, 0x04, 0x6, width: 2)
        #expect(router.active == [0xE000_3000], "virtio-blk has one queue; its notify address is routed")
        #expect(router.routes.allSatisfy { $0.length == 2 }, "the driver's 16-bit notify write")
        setConfig(slot, 0x10, 0xE100_0000)
        #expect(router.active == [0xE100_3000], "the old route is cancelled when the BAR moves")
        setConfig(slot, 0x04, 0x4, width: 2)
        #expect(router.active.isEmpty, "memory decoding off: nothing routed")
        setConfig(slot, 0x04, 0x6, width: 2)
        // MSI-X enable through configuration space runs under the transport's lock, whose
        // unmask hook must not take it again (this deadlocked the first I/O thread version).
        var cursor = Int(transport.configuration.bytes[0x34])
        while transport.configuration.bytes[cursor] != 0x11 { cursor = Int(transport.configuration.bytes[cursor + 1]) }
        setConfig(slot, cursor + 2, 0x8000, width: 2)
        #expect(transport.configuration.bytes[cursor + 3] & 0x80 != 0)
    }

    @Test func aRoutedDoorbellProcessesTheQueueOnAnotherThread() throws {
        defer { try? FileManager.default.removeItem(atPath: diskPath) }
        let (transport, slot) = try makeBlock()
        setConfig(slot, 0x10, 0xE000_0000)
        setConfig(slot, 0x04, 0x6, width: 2)
        let driver = TransportDriver(transport: transport)
        let q = try TestQueue(memory: memory, size: 16)
        driver.bringUp(queues: [q])
        try memory.writeValue(UInt32(0), at: 0x30000)  // read
        try memory.writeValue(UInt64(1), at: 0x30008)  // sector 1
        try q.descriptor(0, address: 0x30000, length: 16, flags: 1, next: 1)
        try q.descriptor(1, address: 0x40000, length: 512, flags: 3, next: 2)
        try q.descriptor(2, address: 0x30080, length: 1, flags: 2)
        try memory.writeValue(UInt8(0xFF), at: 0x30080)
        try q.offer(0)
        try router.ring(0xE000_3000, writes: 2)
        #expect(try q.usedEntries().count == 1)
        #expect(try memory.readValue(UInt8.self, at: 0x30080) == 0, "request completed with VIRTIO_BLK_S_OK")
        #expect(transport.doorbells == 2 && transport.ioThreadDoorbells == 2, "coalesced writes are all counted")
        #expect(platform.mmioBus.unclaimedReads == 0)
    }

    @Test func eventIndexRecheckEndsOnAReceiveQueueWaitingForFrames() throws {
        let transport = VirtioPCITransport(
            model: VirtioNet(peer: NetworkPeer(mode: .sink)), memory: memory, mmio: platform.mmioBus)
        try transport.attach(to: platform)
        _ = transport.configuration.write(offset: 4, count: 2, value: 0x6)
        let driver = TransportDriver(transport: transport)
        let rx = try TestQueue(memory: memory)
        driver.bringUp(queues: [rx], extra: 1 << 5 | VirtioPCITransport.eventIndex)
        for slot in UInt16(0)..<4 {
            try rx.descriptor(slot, address: 0x50000 + 0x800 * UInt64(slot), length: 1526, flags: 2)
            try rx.offer(slot)
        }
        // The buffers stay available until frames arrive; the re-check after publishing
        // avail_event looks for *new* buffers, so this returns (it spun forever before).
        driver.write(0x3000, 0, width: 2)
        #expect(transport.brokenReason == nil)
        #expect(try rx.usedEntries().isEmpty)
        #expect(transport.doorbells == 1 && transport.ioThreadDoorbells == 0, "an exit, not the I/O thread")
    }

    /// A block request at `head` (descriptors 3·head…): read sector 1 into 0x40000 + head·0x1000.
    func offerRead(_ q: TestQueue, head: UInt16) throws {
        let header = 0x30000 + 0x100 * UInt64(head)
        try memory.writeValue(UInt32(0), at: header)
        try memory.writeValue(UInt64(1), at: header + 8)
        try memory.writeValue(UInt8(0xFF), at: header + 0x80)
        try q.descriptor(3 * head, address: header, length: 16, flags: 1, next: 3 * head + 1)
        try q.descriptor(3 * head + 1, address: 0x40000 + 0x1000 * UInt64(head), length: 512, flags: 3, next: 3 * head + 2)
        try q.descriptor(3 * head + 2, address: header + 0x80, length: 1, flags: 2)
        try q.offer(3 * head)
    }

    @Test(arguments: [false, true])
    func whileTheIOThreadPollsTheDriverIsToldNotToRingAndNothingIsMissed(_ eventIndex: Bool) throws {
        defer { try? FileManager.default.removeItem(atPath: diskPath) }
        let (transport, slot) = try makeBlock()
        setConfig(slot, 0x10, 0xE000_0000)
        setConfig(slot, 0x04, 0x6, width: 2)
        let poller = try #require(router.pollers.first, "the transport's queues are offered for polling")
        let q = try TestQueue(memory: memory, size: 16)
        TransportDriver(transport: transport).bringUp(queues: [q], extra: eventIndex ? VirtioPCITransport.eventIndex : 0)
        let flags = { try self.memory.readValue(UInt16.self, at: q.used) }
        let availableEvent = { try self.memory.readValue(UInt16.self, at: q.used + 4 + 8 * 16) }

        #expect(poller.setDoorbells(false) == false)
        if eventIndex {
            #expect(try availableEvent() == 0xFFFF, "avail_event behind every index the driver can make available")
        } else {
            #expect(try flags() == 1, "VIRTQ_USED_F_NO_NOTIFY")
        }
        try offerRead(q, head: 0)
        #expect(poller.pollQueues(), "the thread finds the request without a doorbell")
        #expect(try q.usedEntries().count == 1 && transport.doorbells == 0)
        #expect(poller.pollQueues() == false, "nothing new")
        if eventIndex { #expect(try availableEvent() == 0xFFFF, "a pass while polling leaves avail_event stale") }

        // A request made while the thread stops polling: the driver saw doorbells off and did not
        // ring, so turning them on reports it and the thread takes it before sleeping.
        try offerRead(q, head: 1)
        #expect(poller.setDoorbells(true), "work waiting")
        if eventIndex {
            #expect(try availableEvent() == 1, "avail_event at what the device has taken")
        } else {
            #expect(try flags() == 0)
        }
        #expect(poller.pollQueues())
        #expect(try q.usedEntries().count == 2)
        #expect(try memory.readValue(UInt8.self, at: 0x30180) == 0, "second request completed")
        #expect(poller.setDoorbells(true) == false)
        #expect(transport.brokenReason == nil)
    }
}
