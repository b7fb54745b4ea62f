import Foundation
import Testing

@testable import Machine

/// virtio-balloon against a driver built by hand: inflating gives the host memory back
/// (measured with mincore on guest RAM), deflating lets the guest touch the pages again, the
/// configuration carries the host's target and the driver's count, statistics are held until
/// asked for, and lying page numbers are refused.
@Suite struct VirtioBalloonTests {
    let memory = try! GuestMemory(size: 16 << 20)
    let page = VirtioBalloon.pageSize

    func makeBalloon() throws -> (VirtioBalloon, VirtioPCITransport, TransportDriver, [TestQueue]) {
        let balloon = VirtioBalloon(memory: memory)
        let transport = VirtioPCITransport(model: balloon, memory: memory, mmio: IOBus())
        _ = transport.configuration.write(offset: 4, count: 2, value: 0x6)  // memory + bus master
        let driver = TransportDriver(transport: transport)
        let queues = try [(0x10000, 8), (0x20000, 8), (0x30000, 4)].map {
            try TestQueue(memory: memory, size: UInt16($0.1), base: UInt64($0.0))
        }
        driver.bringUp(queues: queues, extra: VirtioBalloon.statisticsFeature)
        return (balloon, transport, driver, queues)
    }

    /// Offers one device-readable buffer of le32 page numbers at `address` on `queue`.
    func offerPages(_ pages: [UInt32], on queue: TestQueue, at address: UInt64, head: UInt16) throws {
        for (index, number) in pages.enumerated() { try memory.writeValue(number, at: address + 4 * UInt64(index)) }
        try queue.descriptor(head, address: address, length: UInt32(4 * pages.count), flags: 0)
        try queue.offer(head)
    }

    @Test func inflatingGivesHostMemoryBackAndDeflatingLetsTheGuestTouchItAgain() throws {
        let (balloon, transport, driver, queues) = try makeBalloon()
        let first: UInt32 = 0x100  // 1 MiB in: 4 MiB of guest data from there
        for index in 0..<1024 {
            try memory.writeValue(UInt64(index) | 0xA5A5_0000_0000, at: (UInt64(first) + UInt64(index)) * page)
        }
        #expect(try memory.residentPages(at: UInt64(first) * page, count: 1024 * Int(page)) == 1024)

        // 512 pages in, plus a page outside RAM and one repeated: those two are refused.
        try offerPages(Array(first..<first + 512) + [0xFF_FFFF, first], on: queues[0], at: 0x60000, head: 0)
        driver.write(0x3000, 0, width: 2)
        #expect(transport.brokenReason == nil)
        #expect(try queues[0].usedEntries().count == 1)
        #expect(balloon.ballooned == 512 && balloon.refusedPages == 2)
        #expect(try memory.residentPages(at: UInt64(first) * page, count: 512 * Int(page)) == 0, "the host freed them")
        for index in 512..<1024 {
            #expect(
                try memory.readValue(UInt64.self, at: (UInt64(first) + UInt64(index)) * page) == UInt64(index) | 0xA5A5_0000_0000)
        }

        // The driver reports what it holds; the host raises its target and says so.
        driver.write(0x2004, 512)
        #expect(balloon.actualPages == 512)
        let generation = driver.read(0x15, width: 1)
        transport.configurationAccess {
            balloon.setTarget(pages: 2048)
            transport.configurationChanged()
        }
        #expect(driver.read(0x2000) == 2048 && driver.read(0x2004) == 512)
        #expect(driver.read(0x15, width: 1) != generation, "configuration generation moved")

        // Half back; a page never inflated is refused. A deflated page is the guest's again.
        try offerPages(Array(first..<first + 256) + [first + 900], on: queues[1], at: 0x61000, head: 0)
        driver.write(0x3004, 1, width: 2)
        #expect(balloon.ballooned == 256 && balloon.refusedPages == 3)
        #expect(!balloon.isBallooned(page: first) && balloon.isBallooned(page: first + 300))
        #expect(try memory.readValue(UInt64.self, at: UInt64(first) * page) == 0, "a fresh page")
        try memory.writeValue(UInt64(42), at: UInt64(first) * page)
        #expect(try memory.readValue(UInt64.self, at: UInt64(first) * page) == 42)
    }

    @Test func statisticsAreHeldUntilTheHostAsks() throws {
        let (balloon, transport, driver, queues) = try makeBalloon()
        let stats: [(UInt16, UInt64)] = [(0, 5), (4, 12_345)]  // swap-in, free memory
        for (index, (tag, value)) in stats.enumerated() {
            try memory.writeValue(tag, at: 0x62000 + 10 * UInt64(index))
            try memory.writeValue(value, at: 0x62002 + 10 * UInt64(index))
        }
        try queues[2].descriptor(0, address: 0x62000, length: 20, flags: 0)
        try queues[2].offer(0)
        driver.write(0x3008, 2, width: 2)
        #expect(balloon.statistics == [0: 5, 4: 12_345] && balloon.statisticsReports == 1)
        #expect(try queues[2].usedEntries().isEmpty, "held")
        var asked = false
        transport.configurationAccess { asked = (try? balloon.requestStatistics(transport)) == true }
        #expect(asked)
        #expect(try queues[2].usedEntries().count == 1, "returned: the driver refills it")
        #expect(driver.read(0x1000, width: 1) & 1 == 1, "and told by an interrupt (ISR bit 0 without MSI-X)")
    }

    @Test(arguments: [(flags: UInt16(2), length: UInt32(8)), (flags: UInt16(0), length: UInt32(6))])
    func malformedPageListsBreakTheDevice(_ buffer: (flags: UInt16, length: UInt32)) throws {
        let (balloon, transport, driver, queues) = try makeBalloon()
        try queues[0].descriptor(0, address: 0x60000, length: buffer.length, flags: buffer.flags)
        try queues[0].offer(0)
        driver.write(0x3000, 0, width: 2)
        #expect(transport.brokenReason != nil)
        #expect(balloon.ballooned == 0)
    }
}
