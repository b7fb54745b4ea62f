/// virtio-balloon (device type 5, virtio 1.x §5.5): the host asks the guest for memory back.
///
/// The VMM sets a target (`num_pages`, 4 KiB pages) and the driver inflates towards it: it
/// hands page frame numbers (le32, 4 KiB units) on the inflate queue, and the device gives each
/// page's host memory back (`GuestMemory.discard`: MADV_DONTNEED, so the host's resident memory
/// falls at once). Deflating hands pages back to the guest: nothing to do on the host, the next
/// touch faults in a zeroed page. The driver reports how many pages it holds in `actual`.
/// With VIRTIO_BALLOON_F_STATS_VQ the driver keeps one buffer of statistics (le16 tag, le64
/// value) on the stats queue; the device holds it and returns it when it wants fresh figures
/// (`requestStatistics`), as QEMU does.
///
/// Nothing a driver says is trusted: a page outside guest RAM, one inflated twice or deflated
/// without being inflated is refused (counted, nothing done); a buffer that is device-writable
/// or not a whole number of page numbers breaks the device.
public final class VirtioBalloon: VirtioDeviceModel {
    public let name = "balloon"
    public let deviceID: UInt16 = 5
    public let pciClass: (UInt8, UInt8) = (0x05, 0x80)  // memory controller, other
    public static let statisticsFeature: UInt64 = 1 << 1  // VIRTIO_BALLOON_F_STATS_VQ
    public let deviceFeatures: UInt64 = VirtioBalloon.statisticsFeature
    public let queueSizes: [UInt16] = [128, 128, 4]
    public static let pageSize: UInt64 = 4096

    private let memory: GuestMemory
    /// Guest RAM in balloon pages: a page number at or above it is refused.
    private let pageCount: UInt64
    /// One bit per guest page: whether it is in the balloon.
    private var inBalloon: [UInt64]
    public private(set) var ballooned = 0
    /// The host's request (`num_pages`) and the driver's report (`actual`).
    public private(set) var targetPages: UInt32 = 0
    public private(set) var actualPages: UInt32 = 0
    /// Page numbers refused: outside RAM, inflated twice, deflated without being inflated.
    public private(set) var refusedPages = 0
    /// The latest statistics the driver reported, by tag (virtio 1.x §5.5.6.3).
    public private(set) var statistics: [UInt16: UInt64] = [:]
    public private(set) var statisticsReports = 0
    private var heldStatisticsBuffer: UInt16?
    /// Inflated pages not yet given back to the host: consecutive ones go in one call.
    private var discardRun: (first: UInt64, count: UInt64)?
    private var chain: [VirtBuffer] = []

    public init(memory: GuestMemory) {
        self.memory = memory
        pageCount = memory.size / Self.pageSize
        inBalloon = Array(repeating: 0, count: Int((pageCount + 63) / 64))
    }

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        let bytes = withUnsafeBytes(of: (targetPages.littleEndian, actualPages.littleEndian)) { Array($0) }
        for index in data.indices where offset + index < bytes.count { data[index] = bytes[offset + index] }
    }

    public func writeConfiguration(offset: Int, from data: UnsafeRawBufferPointer) {
        // Only `actual` (offset 4) is the driver's to write, as a whole le32.
        guard offset == 4, data.count == 4 else { return }
        actualPages = UInt32(littleEndian: data.loadUnaligned(as: UInt32.self))
    }

    /// The host asks for `pages` pages in the balloon; the caller tells the driver
    /// (`VirtioPCITransport.configurationChanged`) under the transport's lock.
    public func setTarget(pages: UInt32) { targetPages = pages }

    public func reset() {
        actualPages = 0
        heldStatisticsBuffer = nil
        // Pages stay discarded on the host; a reset guest owns them all again and its next
        // touch faults them in.
        for index in inBalloon.indices { inBalloon[index] = 0 }
        ballooned = 0
    }

    public func queueNotified(_ index: Int, _ transport: VirtioPCITransport) throws {
        let queue = transport.queues[index]
        defer { discardPendingRun() }  // also when a malformed list breaks the device midway
        while let head = try queue.popChain(transport.memory, into: &chain) {
            if index == 2 {
                try takeStatistics()
                // Held until the device wants fresh figures; a second buffer replaces the first.
                if let held = heldStatisticsBuffer { try queue.pushUsed(transport.memory, head: held, written: 0) }
                heldStatisticsBuffer = head
                continue
            }
            for buffer in chain {
                guard !buffer.deviceWritable, buffer.length % 4 == 0 else {
                    throw VirtQueueError("balloon page lists are device-readable arrays of le32 page numbers")
                }
                for offset in stride(from: 0, to: buffer.length, by: 4) {
                    let page = UInt32(littleEndian: buffer.bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                    index == 0 ? inflate(page) : deflate(page)
                }
            }
            discardPendingRun()  // the pages are the host's before the driver hears they were taken
            try queue.pushUsed(transport.memory, head: head, written: 0)
        }
    }

    /// Returns the held statistics buffer, asking the driver for new figures. False when the
    /// driver has none queued. Under the transport's lock; the used buffer interrupts as usual.
    public func requestStatistics(_ transport: VirtioPCITransport) throws -> Bool {
        guard let held = heldStatisticsBuffer else { return false }
        heldStatisticsBuffer = nil
        try transport.queues[2].pushUsed(transport.memory, head: held, written: 0)
        transport.usedBuffersReturned()
        return true
    }

    private func inflate(_ page: UInt32) {
        let number = Int(page)
        guard UInt64(page) < pageCount, !contains(number) else {
            refusedPages += 1
            return
        }
        inBalloon[number / 64] |= 1 << UInt64(number % 64)
        ballooned += 1
        if let run = discardRun, run.first + run.count == UInt64(page) {
            discardRun = (run.first, run.count + 1)
        } else {
            discardPendingRun()
            discardRun = (UInt64(page), 1)
        }
    }

    /// Gives the host the pending run of consecutive inflated pages back in one madvise (a
    /// driver lists pages as it finds them, mostly in order: one call per run instead of per page).
    private func discardPendingRun() {
        guard let run = discardRun else { return }
        discardRun = nil
        // Every page of the run was checked to lie inside guest RAM, so this cannot throw.
        try? memory.discard(at: run.first * Self.pageSize, count: Int(run.count * Self.pageSize))
    }

    private func deflate(_ page: UInt32) {
        let number = Int(page)
        guard UInt64(page) < pageCount, contains(number) else {
            refusedPages += 1
            return
        }
        inBalloon[number / 64] &= ~(1 << UInt64(number % 64))
        ballooned -= 1
    }

    private func contains(_ page: Int) -> Bool { inBalloon[page / 64] & (1 << UInt64(page % 64)) != 0 }

    /// Whether guest page `page` is in the balloon.
    public func isBallooned(page: UInt32) -> Bool { UInt64(page) < pageCount && contains(Int(page)) }

    private func takeStatistics() throws {
        for buffer in chain {
            guard !buffer.deviceWritable, buffer.length % 10 == 0 else {
                throw VirtQueueError("balloon statistics are device-readable arrays of 10-byte tag/value pairs")
            }
            for offset in stride(from: 0, to: buffer.length, by: 10) {
                let tag = UInt16(littleEndian: buffer.bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
                let value = UInt64(littleEndian: buffer.bytes.loadUnaligned(fromByteOffset: offset + 2, as: UInt64.self))
                statistics[tag] = value
            }
        }
        statisticsReports += 1
    }
}
