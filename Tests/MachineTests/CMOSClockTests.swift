import Testing

@testable import Machine

/// The RTC and CMOS RAM at ports 0x70/0x71, on a clock the test sets.
@Suite struct CMOSClockTests {
    /// 2026-12-02 21:07:45 UTC, a Wednesday.
    static let instant = 1_796_245_665

    func read(_ cmos: CMOSClock, _ register: UInt8) -> UInt8 {
        withUnsafeBytes(of: register) { cmos.write(offset: 0, from: $0) }
        var value: UInt8 = 0
        withUnsafeMutableBytes(of: &value) { cmos.read(offset: 1, into: $0) }
        return value
    }

    func write(_ cmos: CMOSClock, _ register: UInt8, _ value: UInt8) {
        withUnsafeBytes(of: register) { cmos.write(offset: 0, from: $0) }
        withUnsafeBytes(of: value) { cmos.write(offset: 1, from: $0) }
    }

    @Test func theClockReadsTheHostTimeInBCDOrBinaryAnd24Or12Hours() {
        let cmos = CMOSClock(memorySize: 256 << 20) { Self.instant }
        // BCD, 24-hour: the power-on format.
        #expect(
            [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].map { read(cmos, $0) } == [
                0x45, 0x07, 0x21, 0x04, 0x02, 0x12, 0x26, 0x20,
            ])
        write(cmos, 0x0B, 0x06)  // binary
        #expect([0x00, 0x04, 0x09].map { read(cmos, $0) } == [45, 21, 26])
        write(cmos, 0x0B, 0x00)  // BCD, 12-hour: 9 PM
        #expect(read(cmos, 0x04) == 0x89)
        #expect(read(cmos, 0x0A) & 0x80 == 0, "never an update in progress")
        #expect(read(cmos, 0x0C) == 0 && read(cmos, 0x0D) == 0x80)
    }

    @Test func theRAMKeepsTheShutdownByteAndTheMemorySizes() {
        let cmos = CMOSClock(memorySize: 256 << 20) { Self.instant }
        write(cmos, 0x0F, 0x0A)  // warm reset through the vector at 0x467
        #expect(read(cmos, 0x0F) == 0x0A)
        write(cmos, 0x8F, 0x05)  // the NMI-mask bit is not part of the index
        #expect(read(cmos, 0x0F) == 0x05)
        write(cmos, 0x0D, 0x00)
        #expect(read(cmos, 0x0D) == 0x80, "status D is read-only")
        #expect(read(cmos, 0x15) == 0x80 && read(cmos, 0x16) == 0x02, "640 KiB of base memory")
        #expect(read(cmos, 0x17) == 0x00 && read(cmos, 0x18) == 0xFC, "63 MiB above 1 MiB, the field's limit")
        let above16 = UInt16(read(cmos, 0x34)) | UInt16(read(cmos, 0x35)) << 8
        #expect(above16 == 240 << 4, "240 MiB above 16 MiB in 64 KiB units")
    }
}
