import Foundation
import Results
import Testing

@testable import Machine

/// A guest that writes garbage into device registers, rings and descriptors. Swift traps on
/// overflow and out-of-range access, so surviving these loops is one property under test: every
/// value a guest controls must be checked before it becomes an address, a length or an index.
/// The other is the states the devices must reach: garbage breaks them (with a reason), a reset
/// heals them, and a well-formed request between the garbage still moves data. A device that
/// rejected every access at the first register write would fail these tests.
@Suite struct HostileGuestFuzzTests {
    /// Mostly hostile values: extremes, values near guest RAM's end, and random ones.
    static func value(_ random: inout SplitMix64, ramSize: UInt64) -> UInt64 {
        switch random.next() % 8 {
        case 0: return 0
        case 1: return UInt64.max
        case 2: return UInt64.max - random.next() % 64
        case 3: return ramSize - random.next() % 4096
        case 4: return random.next() % ramSize
        case 5: return random.next() % 512
        default: return random.next()
        }
    }

    static func scribble(_ memory: GuestMemory, _ random: inout SplitMix64, around address: UInt64, count: Int) {
        for _ in 0..<count {
            let target = (address + random.next() % 8192) % (memory.size - 8)
            try? memory.writeValue(value(&random, ramSize: memory.size), at: target)
        }
    }

    @Test(arguments: 0..<4) func e1000SurvivesGarbage(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let memory = try GuestMemory(size: 1 << 20)
        let nic = E1000(memory: memory, mmio: IOBus(), peer: NetworkPeer(mode: seed % 2 == 0 ? .echo : .source))
        _ = nic.configuration.write(offset: 4, count: 2, value: 0x6)
        let registers: [UInt64] = [
            0x0, 0x14, 0xC0, 0xD0, 0xD8, 0x100, 0x400, 0x2800, 0x2804, 0x2808, 0x2810, 0x2818, 0x3800, 0x3804, 0x3808, 0x3810,
            0x3818,
        ]
        var brokenReasons = Set<String>()
        var healthyTransmits = 0
        for step in 0..<20000 {
            if let reason = nic.brokenReason { brokenReasons.insert(String(reason.prefix(30))) }
            if step % 50 == 0 {
                write(nic, 0x0, 1 << 26)  // reset: a broken device must recover and be fuzzed again
                #expect(nic.brokenReason == nil, "a reset heals the NIC")
                if step % 500 == 0 {
                    #expect(try Self.transmitsOneGoodFrame(nic, memory, sequence: UInt32(step)), "step \(step)")
                    healthyTransmits += 1
                    write(nic, 0x0, 1 << 26)
                }
                write(nic, 0x0400, 0x2)
                write(nic, 0x0100, 0x2)
            }
            let register =
                random.next() % 4 == 0
                ? random.next() % UInt64(E1000.barSize) : registers[Int(random.next() % UInt64(registers.count))]
            let width = [1, 2, 4, 8][Int(random.next() % 4)]
            if random.next() % 3 == 0 {
                _ = read(nic, register, width: width)
            } else {
                write(nic, register, Self.value(&random, ramSize: memory.size), width: width)
            }
            if random.next() % 16 == 0 { Self.scribble(memory, &random, around: 0, count: 8) }
        }
        #expect(!brokenReasons.isEmpty, "garbage never broke the NIC: the fuzzer did not reach its checks")
        #expect(healthyTransmits == 40)
    }

    /// A well-formed one-descriptor transmit on a ring the scribbling does not reach.
    static func transmitsOneGoodFrame(_ nic: E1000, _ memory: GuestMemory, sequence: UInt32) throws -> Bool {
        let peer = try #require(nic.peer as? NetworkPeer)
        let before = peer.framesFromGuest
        try memory.write(NetworkPeer.frame(sequence: sequence, length: 100), at: 0x90000)
        try memory.writeValue(UInt64(0x90000), at: 0x80000)
        try memory.writeValue(UInt16(100), at: 0x80008)
        try memory.writeValue(UInt8(0x09), at: 0x8000B)  // EOP | RS
        try memory.writeValue(UInt8(0), at: 0x8000C)
        write(nic, 0x3800, 0x80000)
        write(nic, 0x3804, 0)
        write(nic, 0x3808, 16 * 8)
        write(nic, 0x3810, 0)
        write(nic, 0x3818, 0)
        write(nic, 0x0400, 0x2)
        write(nic, 0x3818, 1)
        let descriptorDone = try memory.readValue(UInt8.self, at: 0x8000C) & 1 == 1
        return peer.framesFromGuest == before + 1 && descriptorDone && nic.brokenReason == nil
    }

    @Test(arguments: 0..<4) func virtioSurvivesGarbage(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let memory = try GuestMemory(size: 1 << 20)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-\(UUID().uuidString).img").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let models: [VirtioDeviceModel] = [
            VirtioNet(peer: NetworkPeer(mode: .echo)), VirtioBlock(disk: try DiskImage.create(path: path, size: 1 << 20)),
        ]
        for model in models {
            let transport = VirtioPCITransport(model: model, memory: memory, mmio: IOBus())
            _ = transport.configuration.write(offset: 4, count: 2, value: 0x6)
            let driver = TransportDriver(transport: transport)
            var timesBroken = 0
            var healthyFlushes = 0
            for round in 0..<300 {
                if transport.brokenReason != nil {
                    timesBroken += 1
                    #expect(transport.status & 0x40 != 0, "a broken device says DEVICE_NEEDS_RESET")
                }
                // Sometimes a well-formed bring-up, so the queues really run on scribbled rings.
                if round % 10 == 0 {
                    let q = try TestQueue(memory: memory, size: 8)
                    driver.bringUp(queues: [q, q], extra: model is VirtioNet ? 1 << 5 : 0)
                    #expect(transport.brokenReason == nil && transport.status == 15, "bring-up resets and heals")
                    if model is VirtioBlock {
                        #expect(try Self.flushCompletes(q, memory, driver), "round \(round)")
                        healthyFlushes += 1
                    }
                }
                for _ in 0..<40 {
                    let offset = random.next() % 0x4000
                    let width = [1, 2, 4, 8][Int(random.next() % 4)]
                    if random.next() % 3 == 0 {
                        _ = driver.read(Int(offset), width: width)
                    } else {
                        driver.write(Int(offset), Self.value(&random, ramSize: memory.size), width: width)
                    }
                }
                Self.scribble(memory, &random, around: 0x10000, count: 64)
                driver.write(0x3000, 0, width: 2)
                driver.write(0x3004, 1, width: 2)
            }
            #expect(timesBroken > 0, "garbage never broke \(type(of: model))")
            if model is VirtioBlock { #expect(healthyFlushes == 30) }
        }
    }

    /// A well-formed flush request (header, status) on a freshly brought-up queue.
    static func flushCompletes(_ q: TestQueue, _ memory: GuestMemory, _ driver: TransportDriver) throws -> Bool {
        try memory.writeValue(UInt32(4), at: 0x30000)  // VIRTIO_BLK_T_FLUSH
        try memory.writeValue(UInt64(0), at: 0x30008)
        try memory.writeValue(UInt8(0xFF), at: 0x30080)
        try q.descriptor(0, address: 0x30000, length: 16, flags: 1, next: 1)
        try q.descriptor(1, address: 0x30080, length: 1, flags: 2)
        try q.offer(0)
        driver.write(0x3000, 0, width: 2)
        return try memory.readValue(UInt8.self, at: 0x30080) == 0 && q.usedEntries().count == 1
    }

    @Test(arguments: 0..<4) func ideSurvivesGarbage(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-\(UUID().uuidString).img").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let ide = IDEDisk(disk: try DiskImage.create(path: path, size: 1 << 20))
        var aborted = 0
        var healthyRoundTrips = 0
        for step in 0..<50000 {
            if read(ide.controlBlock, 0, width: 1) & 0x01 != 0 { aborted += 1 }
            if step % 1000 == 999 {
                write(ide.controlBlock, 0, 0x04, width: 1)  // SRST: software reset
                write(ide.controlBlock, 0, 0x00, width: 1)
                #expect(Self.writesAndReadsBackOneSector(ide, lba: UInt64(step % 2000), seed: UInt16(step & 0xFFFF)))
                healthyRoundTrips += 1
            }
            let register = random.next() % 8
            let width = [1, 2, 4][Int(random.next() % 3)]
            switch random.next() % 4 {
            case 0: _ = read(ide.commandBlock, register, width: width)
            case 1: write(ide.controlBlock, 0, random.next() % 256, width: 1)
            default:
                let command: [UInt64] = [0x20, 0x24, 0x30, 0x34, 0xEC, 0xE7, 0xEA, 0xEF, random.next() % 256]
                let value = register == 7 ? command[Int(random.next() % UInt64(command.count))] : random.next()
                write(ide.commandBlock, register, value, width: width)
            }
        }
        #expect(aborted > 0, "garbage never made the disk report an error")
        #expect(healthyRoundTrips == 50)
    }

    /// WRITE SECTORS then READ SECTORS of one sector (LBA28), by PIO, with the data compared.
    static func writesAndReadsBackOneSector(_ ide: IDEDisk, lba: UInt64, seed: UInt16) -> Bool {
        let block = ide.commandBlock
        func issue(_ command: UInt64) {
            write(block, 6, 0xE0 | (lba >> 24 & 0x0F), width: 1)
            write(block, 2, 1, width: 1)
            write(block, 3, lba & 0xFF, width: 1)
            write(block, 4, lba >> 8 & 0xFF, width: 1)
            write(block, 5, lba >> 16 & 0xFF, width: 1)
            write(block, 7, command, width: 1)
        }
        issue(0x30)
        for i in 0..<256 { write(block, 0, UInt64(seed &+ UInt16(i)), width: 2) }
        guard read(block, 7, width: 1) & 0x89 == 0 else { return false }  // not busy, no DRQ, no error
        issue(0x20)
        let words = (0..<256).map { _ in UInt16(read(block, 0, width: 2)) }
        return words == (0..<256).map { seed &+ UInt16($0) } && read(block, 7, width: 1) & 0x01 == 0
    }

    @Test(arguments: 0..<4) func pciConfigurationSurvivesGarbage(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let mmio = IOBus()
        let memory = try GuestMemory(size: 1 << 20)
        let bus = PCIBus(mmio: mmio)
        let nicSlot = bus.plug(E1000(memory: memory, mmio: mmio, peer: NetworkPeer(mode: .sink)))
        let virtioSlot = bus.plug(
            VirtioPCITransport(model: VirtioNet(peer: NetworkPeer(mode: .sink)), memory: memory, mmio: mmio))
        func identity(_ slot: Int) -> UInt64 {
            write(bus, 0, 0x8000_0000 | UInt64(slot) << 11)
            return read(bus, 4)
        }
        var barsMoved = 0
        for step in 0..<20000 {
            if step % 1000 == 999 {
                // Whatever garbage went to 0xCF8/0xCFC, the devices are still where enumeration finds them.
                #expect(identity(0) == 0x1237_8086 && identity(nicSlot) == 0x100E_8086)
                #expect(identity(virtioSlot) & 0xFFFF == 0x1AF4)
                write(bus, 0, 0x8000_0000 | UInt64(nicSlot) << 11 | 0x10)
                if read(bus, 4) & 0xFFFF_FFF0 != 0 { barsMoved += 1 }
            }
            let offset = random.next() % 8
            let width = [1, 2, 4][Int(random.next() % 3)]
            if random.next() % 3 == 0 {
                _ = read(bus, offset, width: width)
            } else {
                write(bus, offset, random.next(), width: width)
            }
            if random.next() % 8 == 0 { _ = read(mmio, random.next(), width: 4) }
        }
        #expect(barsMoved > 0, "garbage never reprogrammed a BAR: the fuzzer did not reach configuration writes")
    }
}

@Suite struct RingAddressOverflowTests {
    @Test func ringBasesNearTheTopOfTheAddressSpaceAreRejected() throws {
        let memory = try GuestMemory(size: 1 << 20)
        let nic = E1000(memory: memory, mmio: IOBus(), peer: NetworkPeer(mode: .source))
        _ = nic.configuration.write(offset: 4, count: 2, value: 0x6)
        write(nic, 0x3800, 0xFFFF_FFF0)  // TDBAL
        write(nic, 0x3804, 0xFFFF_FFFF)  // TDBAH: base = 2^64 - 16
        write(nic, 0x3808, 16 * 8)
        write(nic, 0x3810, 1)
        write(nic, 0x0400, 0x2)
        write(nic, 0x3818, 2)  // descriptor 1 would be at 2^64: must not trap
        #expect(nic.brokenReason != nil)
        write(nic, 0x0, 1 << 26)
        write(nic, 0x2800, 0xFFFF_FFF0)
        write(nic, 0x2804, 0xFFFF_FFFF)
        write(nic, 0x2808, 16 * 8)
        write(nic, 0x2810, 3)
        write(nic, 0x2818, 5)
        write(nic, 0x0100, 0x2)
        #expect(nic.brokenReason != nil)
    }
}
