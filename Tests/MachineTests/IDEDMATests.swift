import Foundation
import Testing

@testable import Machine

/// IDE as an OS driver uses it: IRQ 14 and the PIIX bus master moving sectors along a PRD table.
@Suite struct IDEDMATests {
    let memory: GuestMemory
    let interrupts = InterruptRecorder()
    let ide: IDEDisk
    let disk: DiskImage
    let ports = IOBus()
    let busMasterPort: UInt64 = 0xC000

    init() throws {
        memory = try GuestMemory(size: 1 << 20)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ide-dma-\(UUID().uuidString).img").path
        disk = try DiskImage.create(path: path, size: 1 << 20)
        ide = IDEDisk(disk: disk)
        let platform = Platform(memory: memory, portBus: ports, mmioBus: IOBus(), interrupts: interrupts)
        try ide.attach(to: platform)
        let configuration = ide.busMaster.configuration
        #expect(configuration.bytes[0x3D] == 0, "no INTx pin: the channel uses IRQ 14")
        _ = configuration.write(offset: 0x20, count: 4, value: 0xFFFF_FFFF)  // size BAR 4
        #expect(configuration.read(offset: 0x20, count: 4) == 0xFFF1, "16 I/O ports")
        _ = configuration.write(offset: 0x20, count: 4, value: UInt32(busMasterPort))
        _ = configuration.write(offset: 4, count: 2, value: 0x5)  // I/O decoding, bus master
        ide.busMaster.barMoved(4, to: configuration.barAddress(4))
    }

    func port(_ offset: UInt64, _ value: UInt64, width: Int = 1) {
        let bytes = (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        bytes.withUnsafeBytes { _ = ports.write(busMasterPort + offset, from: $0) }
    }

    func command(_ code: UInt8, lba: UInt64, count: UInt16) {
        let block = ide.commandBlock
        write(block, 6, 0x40, width: 1)
        write(block, 2, UInt64(count >> 8), width: 1)
        write(block, 3, 0, width: 1)
        write(block, 4, 0, width: 1)
        write(block, 5, 0, width: 1)
        write(block, 2, UInt64(count & 0xFF), width: 1)
        write(block, 3, lba & 0xFF, width: 1)
        write(block, 4, lba >> 8 & 0xFF, width: 1)
        write(block, 5, lba >> 16 & 0xFF, width: 1)
        write(block, 7, UInt64(code), width: 1)
    }

    /// A PRD table at 0x1000: (address, bytes, last) entries.
    func table(_ entries: [(UInt32, UInt16, Bool)]) throws {
        for (index, entry) in entries.enumerated() {
            try memory.writeValue(entry.0, at: 0x1000 + 8 * UInt64(index))
            try memory.writeValue(entry.1, at: 0x1004 + 8 * UInt64(index))
            try memory.writeValue(UInt16(entry.2 ? 0x8000 : 0), at: 0x1006 + 8 * UInt64(index))
        }
        port(4, 0x1000, width: 4)
    }

    @Test func writeAndReadBackThroughAPRDTableWithOneInterruptEach() throws {
        defer { try? FileManager.default.removeItem(atPath: disk.path) }
        write(ide.controlBlock, 0, 0x00, width: 1)  // nIEN clear
        let pattern = (0..<2048).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try memory.write(pattern, at: 0x8000)
        // WRITE DMA EXT of 4 sectors from two PRD entries, started after the command.
        try table([(0x8000, 1024, false), (0x8400, 1024, true)])
        command(0x35, lba: 10, count: 4)
        #expect(interrupts.assertions[14] == nil, "nothing moves before Start")
        port(0, 0x01)  // start, memory -> disk
        #expect(interrupts.levels[14] == true, "IRQ 14 at the end of the transfer")
        #expect(read(ports, busMasterPort + 2, width: 1) & 0x07 == 0x04, "interrupt bit, not active, no error")
        #expect(read(ide.commandBlock, 7, width: 1) & 0x89 == 0, "not busy, no DRQ, no error")
        #expect(interrupts.levels[14] == false, "the status read acknowledged INTRQ")
        #expect(ide.interruptCauseReads == 1)
        port(2, 0x04)  // write 1 to clear
        port(0, 0x00)
        // READ DMA EXT into another buffer, Start given before the command this time.
        try table([(0xC000, 2048, true)])
        port(0, 0x09)  // start, disk -> memory
        command(0x25, lba: 10, count: 4)
        #expect(try memory.read(at: 0xC000, count: 2048) == pattern)
        #expect(interrupts.assertions[14] == 2)
    }

    @Test func badPRDTablesEndTheCommandWithAnErrorNotTheVMM() throws {
        defer { try? FileManager.default.removeItem(atPath: disk.path) }
        let cases: [(String, [(UInt32, UInt16, Bool)])] = [
            ("too short for the transfer", [(0x8000, 512, true)]),
            ("outside guest RAM", [(0xFFFF_F000, 2048, true)]),
        ]
        for (why, entries) in cases {
            try table(entries)
            port(0, 0x09)
            command(0x25, lba: 0, count: 4)
            #expect(read(ports, busMasterPort + 2, width: 1) & 0x02 != 0, "\(why): bus-master error bit")
            #expect(read(ide.commandBlock, 7, width: 1) & 0x01 != 0, "\(why): the command ended with ERR")
            port(0, 0x00)
            port(2, 0x06)
        }
        // A table that runs off the end of RAM without an end marker, one outside RAM, and a
        // direction that does not match the command: each an error, none a crash.
        try memory.writeValue(UInt32(0x8000), at: 0xF_FFF8)
        try memory.writeValue(UInt32(2), at: 0xF_FFFC)  // 2 bytes, no end-of-table flag
        port(4, 0xF_FFF8, width: 4)
        port(0, 0x09)
        command(0x25, lba: 0, count: 1)
        #expect(read(ports, busMasterPort + 2, width: 1) & 0x02 != 0)
        port(0, 0x00)
        port(2, 0x06)
        port(4, 0xFFFF_FFF8, width: 4)
        port(0, 0x09)
        command(0x25, lba: 0, count: 1)
        #expect(read(ports, busMasterPort + 2, width: 1) & 0x02 != 0)
        port(0, 0x00)
        port(2, 0x06)
        try table([(0x8000, 512, true)])
        port(0, 0x01)  // memory -> disk, but the command reads
        command(0x25, lba: 0, count: 1)
        #expect(read(ports, busMasterPort + 2, width: 1) & 0x02 != 0)
        #expect(ide.busMaster.failedTransfers == 5)
        _ = configurationOff()
        // The disk still works afterwards.
        port(0, 0x00)
        port(2, 0x06)
        port(0, 0x09)
        command(0x25, lba: 0, count: 1)
        #expect(read(ports, busMasterPort + 2, width: 1) & 0x07 == 0x04)
    }

    /// Bus mastering off: a DMA command ends with the error bit.
    func configurationOff() -> Bool {
        _ = ide.busMaster.configuration.write(offset: 4, count: 2, value: 0x1)
        port(0, 0x00)
        port(2, 0x06)
        port(0, 0x09)
        command(0x25, lba: 0, count: 1)
        let failed = read(ports, busMasterPort + 2, width: 1) & 0x02 != 0
        _ = ide.busMaster.configuration.write(offset: 4, count: 2, value: 0x5)
        #expect(failed, "DMA needs bus mastering")
        return failed
    }

    @Test func pioInterruptsFollowNIEN() throws {
        defer { try? FileManager.default.removeItem(atPath: disk.path) }
        write(ide.controlBlock, 0, 0x02, width: 1)  // nIEN: a polling driver
        command(0x24, lba: 0, count: 2)
        #expect(interrupts.levels[14] != true, "held low while nIEN is set")
        write(ide.controlBlock, 0, 0x00, width: 1)
        #expect(interrupts.levels[14] == true, "the pending INTRQ reaches the line once enabled")
        _ = read(ide.controlBlock, 0, width: 1)  // alternate status: no acknowledge
        #expect(interrupts.levels[14] == true)
        _ = read(ide.commandBlock, 7, width: 1)
        #expect(interrupts.levels[14] == false)
        for _ in 0..<256 { _ = read(ide.commandBlock, 0, width: 2) }
        #expect(interrupts.levels[14] == true, "the second sector is ready: another interrupt")
    }
}
