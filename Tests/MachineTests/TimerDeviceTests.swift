import Testing

@testable import Machine

/// The 8254 PIT (with port 0x61) and the ACPI PM timer, on a clock the test moves.
@Suite struct TimerDeviceTests {
    final class Clock {
        var nanoseconds: UInt64 = 1_000_000
    }

    func readByte(_ device: BusDevice, _ offset: UInt64) -> UInt8 {
        var value: UInt8 = 0
        withUnsafeMutableBytes(of: &value) { device.read(offset: offset, into: $0) }
        return value
    }

    func write(_ device: BusDevice, _ offset: UInt64, _ value: UInt8) {
        withUnsafeBytes(of: value) { device.write(offset: offset, from: $0) }
    }

    /// Linux's quick_pit_calibrate: channel 2, mode 0, from 0xFFFF, read low then high byte.
    @Test func channelTwoCountsDownInRealTimeWhileItsGateIsHigh() {
        let clock = Clock()
        let pit = ProgrammableIntervalTimer { clock.nanoseconds }
        let portB = SystemControlPort(timer: pit)
        write(portB, 0, 0x01)  // gate 2 high, speaker off
        write(pit, 3, 0xB0)  // channel 2, low/high, mode 0
        write(pit, 2, 0xFF)
        write(pit, 2, 0xFF)
        func count() -> UInt16 { UInt16(readByte(pit, 2)) | UInt16(readByte(pit, 2)) << 8 }
        #expect(count() == 0xFFFF)
        clock.nanoseconds += 1_000_000  // 1 ms: 1193 ticks
        #expect(count() == 0xFFFF - 1193)
        #expect(readByte(portB, 0) & 0x20 == 0, "OUT2 low before terminal count")
        clock.nanoseconds += 60_000_000  // past 65535 ticks
        #expect(readByte(portB, 0) & 0x20 != 0, "OUT2 high at terminal count")
        // Gate low holds a one-shot count; high again resumes it.
        write(pit, 3, 0xB0)
        write(pit, 2, 0x00)
        write(pit, 2, 0x10)  // 4096
        clock.nanoseconds += 1_000_000
        write(portB, 0, 0x00)
        let held = count()
        clock.nanoseconds += 5_000_000
        #expect(count() == held && held == 4096 - 1193)
        write(portB, 0, 0x01)
        clock.nanoseconds += 1_000_000
        #expect(count() == 4096 - 2 * 1193)
    }

    @Test func latchesReadBackAndPeriodicModes() {
        let clock = Clock()
        let pit = ProgrammableIntervalTimer { clock.nanoseconds }
        write(pit, 3, 0x34)  // channel 0, low/high, mode 2
        write(pit, 0, 0xE8)
        write(pit, 0, 0x03)  // 1000
        clock.nanoseconds += 500_000  // 596 ticks
        write(pit, 3, 0x00)  // latch channel 0
        clock.nanoseconds += 300_000
        #expect(UInt16(readByte(pit, 0)) | UInt16(readByte(pit, 0)) << 8 == 1000 - 596, "the latched count")
        clock.nanoseconds += 1_000_000  // 2.3 periods after load in total: the count wraps
        let live = UInt16(readByte(pit, 0)) | UInt16(readByte(pit, 0)) << 8
        let ticks = MonotonicClock.ticks(in: 1_800_000, atHertz: ProgrammableIntervalTimer.hertz)
        #expect(ticks == 2147 && live == UInt16(1000 - ticks % 1000))
        write(pit, 3, 0xE2)  // read-back: status of channel 0
        #expect(readByte(pit, 0) & 0x3F == 0x34, "access 3, mode 2, binary")
        #expect(readByte(pit, 3) == 0xFF, "the control word is write-only")
    }

    @Test func thePMTimerCountsAtItsOwnRate() {
        let clock = Clock()
        let timer = ACPIPMTimer { clock.nanoseconds }
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) { timer.read(offset: 0, into: $0) }
        #expect(value == 0)
        clock.nanoseconds += 1_000_000_000
        withUnsafeMutableBytes(of: &value) { timer.read(offset: 0, into: $0) }
        #expect(value == 3_579_545)
    }
}
