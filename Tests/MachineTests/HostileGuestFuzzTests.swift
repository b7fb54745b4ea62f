import Foundation
import Testing

@testable import Machine

/// A guest that writes garbage into device registers, rings and descriptors. Swift traps on
/// overflow and out-of-range access, so surviving these loops is the property under test: every
/// value a guest controls must be checked before it becomes an address, a length or an index.
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
        for step in 0..<20000 {
            if step % 50 == 0 {
                write(nic, 0x0, 1 << 26)  // reset: a broken device must recover and be fuzzed again
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
            for round in 0..<300 {
                // Sometimes a well-formed bring-up, so the queues really run on scribbled rings.
                if round % 10 == 0 {
                    let q = try TestQueue(memory: memory, size: 8)
                    driver.bringUp(queues: [q, q], extra: model is VirtioNet ? 1 << 5 : 0)
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
        }
    }

    @Test(arguments: 0..<4) func ideSurvivesGarbage(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-\(UUID().uuidString).img").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let ide = IDEDisk(disk: try DiskImage.create(path: path, size: 1 << 20))
        for _ in 0..<50000 {
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
    }

    @Test(arguments: 0..<4) func pciConfigurationSurvivesGarbage(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let mmio = IOBus()
        let memory = try GuestMemory(size: 1 << 20)
        let bus = PCIBus(mmio: mmio)
        bus.plug(E1000(memory: memory, mmio: mmio, peer: NetworkPeer(mode: .sink)))
        bus.plug(VirtioPCITransport(model: VirtioNet(peer: NetworkPeer(mode: .sink)), memory: memory, mmio: mmio))
        for _ in 0..<20000 {
            let offset = random.next() % 8
            let width = [1, 2, 4][Int(random.next() % 3)]
            if random.next() % 3 == 0 {
                _ = read(bus, offset, width: width)
            } else {
                write(bus, offset, random.next(), width: width)
            }
            if random.next() % 8 == 0 { _ = read(mmio, random.next(), width: 4) }
        }
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
