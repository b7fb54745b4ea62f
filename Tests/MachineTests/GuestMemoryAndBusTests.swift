import Testing

@testable import Machine

@Suite struct GuestMemoryTests {
    @Test func readsBackWhatWasWritten() throws {
        let memory = try GuestMemory(size: 1 << 20)
        try memory.writeValue(UInt32(0xDEAD_BEEF), at: 0x1000)
        #expect(try memory.readValue(UInt32.self, at: 0x1000) == 0xDEAD_BEEF)
        #expect(try memory.read(at: 0x1000, count: 4) == [0xEF, 0xBE, 0xAD, 0xDE])
    }

    @Test func refusesAccessOutsideGuestRAM() throws {
        let memory = try GuestMemory(size: 1 << 20)
        #expect(throws: GuestMemoryError.self) { try memory.bytes(at: (1 << 20) - 2, count: 4) }
        #expect(throws: GuestMemoryError.self) { try memory.bytes(at: UInt64.max - 1, count: 4) }  // wraps around
        #expect(throws: GuestMemoryError.self) { try memory.readValue(UInt64.self, at: 1 << 20) }
        #expect(try memory.bytes(at: (1 << 20) - 4, count: 4).count == 4)  // the last bytes are fine
    }

    @Test func rejectsNonexistentNUMANode() throws {
        #expect(throws: GuestMemoryError.self) { try GuestMemory(size: 1 << 20, numaNode: 999) }
    }
}

final class RecordingDevice: BusDevice {
    var writes: [(UInt64, UInt64)] = []
    var readValue: UInt64 = 0x42
    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) { data.storeLittleEndian(readValue + offset) }
    func write(offset: UInt64, from data: UnsafeRawBufferPointer) { writes.append((offset, data.littleEndianValue)) }
}

@Suite struct IOBusTests {
    func read(_ bus: IOBus, _ address: UInt64, size: Int = 1) -> (UInt64, Bool) {
        var buffer = [UInt8](repeating: 0, count: size)
        let claimed = buffer.withUnsafeMutableBytes { bus.read(address, into: $0) }
        return (buffer.withUnsafeBytes { $0.littleEndianValue }, claimed)
    }

    @Test func routesAccessesToTheDeviceWithRelativeOffsets() throws {
        let bus = IOBus()
        let device = RecordingDevice()
        try bus.insert(device, at: 0x3F8, length: 8)
        #expect(read(bus, 0x3FA) == (0x44, true))
        let value: [UInt8] = [0x7A]
        value.withUnsafeBytes { _ = bus.write(0x3FF, from: $0) }
        #expect(device.writes.count == 1 && device.writes[0] == (7, 0x7A))
    }

    @Test func unclaimedReadsAreAllOnesAndCounted() throws {
        let bus = IOBus()
        try bus.insert(RecordingDevice(), at: 0x100, length: 0x10)
        #expect(read(bus, 0x110, size: 4) == (0xFFFF_FFFF, false))
        #expect(read(bus, 0xFF) == (0xFF, false))
        #expect(bus.unclaimedReads == 2)
    }

    @Test func refusesOverlappingAndEmptyRanges() throws {
        let bus = IOBus()
        try bus.insert(RecordingDevice(), at: 0x100, length: 0x10)
        #expect(throws: BusError.self) { try bus.insert(RecordingDevice(), at: 0x10F, length: 1) }
        #expect(throws: BusError.self) { try bus.insert(RecordingDevice(), at: 0xF0, length: 0x11) }
        #expect(throws: BusError.emptyRange) { try bus.insert(RecordingDevice(), at: 0x200, length: 0) }
        try bus.insert(RecordingDevice(), at: 0x110, length: 1)  // adjacent is fine
    }

    @Test func findsTheRightDeviceAmongMany() throws {
        let bus = IOBus()
        var devices: [RecordingDevice] = []
        for index in (0..<32).reversed() {
            let device = RecordingDevice()
            device.readValue = UInt64(index) << 8
            devices.append(device)
            try bus.insert(device, at: UInt64(index) * 0x100, length: 0x10)
        }
        for index in 0..<32 {
            #expect(read(bus, UInt64(index) * 0x100 + 3, size: 2) == (UInt64(index) << 8 + 3, true))
            #expect(read(bus, UInt64(index) * 0x100 + 0x10).1 == false)
        }
    }
}
