/// The PC's 8254 programmable interval timer at ports 0x40-0x43, with the gate and output of
/// channel 2 on port 0x61 (`SystemControlPort`): what an OS calibrates its TSC against (Linux's
/// quick_pit_calibrate reads channel 2 counting down from 0xFFFF; pit_calibrate_tsc waits for
/// its output in mode 0).
///
/// The counters run at 1.193182 MHz of the host's monotonic clock, computed when read rather
/// than ticked. Modes 0 (interrupt on terminal count), 2 (rate generator), 3 (square wave) and 4
/// (software strobe) count; 1 and 5 (hardware-triggered) behave as 0 and 4. Counts are binary
/// (BCD is ignored). Reads take the latch, the read-back command's status or the live count,
/// low and high byte as the access mode says. Channel 0 raises no IRQ 0: the guests here take
/// their ticks from the local APIC timer.
public final class ProgrammableIntervalTimer: BusDevice {
    public static let base: UInt64 = 0x40
    public static let length: UInt64 = 4
    public static let hertz: UInt64 = 1_193_182

    struct Channel {
        var mode: UInt8 = 0
        /// 1: low byte, 2: high byte, 3: low then high.
        var access: UInt8 = 3
        /// The count written (0 means 65536).
        var reload: UInt32 = 0x1_0000
        /// When counting began (nanoseconds); nil before a count is written.
        var loadedAt: UInt64?
        var latched: UInt16?
        var status: UInt8?
        var writingHigh = false
        var readingHigh = false
        var partialReload: UInt8 = 0
        var gate = true
        /// While the gate is low, the ticks counted before it fell.
        var ticksWhenGated: UInt64?
    }

    private var channels = [Channel](repeating: Channel(), count: 3)
    private let now: () -> UInt64

    /// - Parameter now: nanoseconds of a monotonic clock (tests give their own).
    public init(now: @escaping () -> UInt64 = MonotonicClock.nanoseconds) {
        self.now = now
        channels[2].gate = false  // port 0x61 bit 0 starts clear
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        guard offset < 3 else {
            data.storeLittleEndian(0xFF)  // the control word register is write-only
            return
        }
        data.storeLittleEndian(UInt64(readByte(Int(offset))))
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        let value = UInt8(truncatingIfNeeded: data.littleEndianValue)
        if offset == 3 {
            control(value)
        } else {
            writeCount(Int(offset), value)
        }
    }

    private func control(_ value: UInt8) {
        let selected = Int(value >> 6)
        guard selected < 3 else {
            readBack(value)
            return
        }
        let access = (value >> 4) & 3
        if access == 0 {
            // Counter latch: the count as it is now, until read.
            if channels[selected].latched == nil { channels[selected].latched = count(selected) }
            return
        }
        var mode = (value >> 1) & 7
        if mode > 5 { mode -= 4 }  // 6 and 7 are 2 and 3
        channels[selected] = Channel(mode: mode, access: access, gate: channels[selected].gate)
    }

    /// Read-back (0b11): bit 5 clear latches the counts, bit 4 clear the status, of the channels
    /// whose bits 1-3 are set.
    private func readBack(_ value: UInt8) {
        for index in 0..<3 where value & (2 << index) != 0 {
            if value & 0x20 == 0, channels[index].latched == nil { channels[index].latched = count(index) }
            if value & 0x10 == 0, channels[index].status == nil {
                let channel = channels[index]
                let output: UInt8 = self.output(index) ? 0x80 : 0
                let nullCount: UInt8 = channel.loadedAt == nil ? 0x40 : 0
                channels[index].status = output | nullCount | channel.access << 4 | channel.mode << 1
            }
        }
    }

    private func writeCount(_ index: Int, _ value: UInt8) {
        var channel = channels[index]
        switch channel.access {
        case 1: channel.reload = UInt32(value)
        case 2: channel.reload = UInt32(value) << 8
        default:
            if !channel.writingHigh {
                channel.partialReload = value
                channel.writingHigh = true
                channels[index] = channel
                return
            }
            channel.reload = UInt32(channel.partialReload) | UInt32(value) << 8
            channel.writingHigh = false
        }
        if channel.reload == 0 { channel.reload = 0x1_0000 }
        channel.loadedAt = now()
        channel.ticksWhenGated = channel.gate ? nil : 0
        channels[index] = channel
    }

    private func readByte(_ index: Int) -> UInt8 {
        if let status = channels[index].status {
            channels[index].status = nil
            return status
        }
        let value = channels[index].latched ?? count(index)
        let access = channels[index].access
        let high: Bool
        switch access {
        case 1: high = false
        case 2: high = true
        default:
            high = channels[index].readingHigh
            channels[index].readingHigh.toggle()
        }
        if access != 3 || high { channels[index].latched = nil }
        return UInt8(truncatingIfNeeded: high ? value >> 8 : value)
    }

    /// Counter ticks since the count was loaded (frozen while the gate is low).
    private func ticks(_ index: Int) -> UInt64? {
        let channel = channels[index]
        guard let loadedAt = channel.loadedAt else { return nil }
        if let frozen = channel.ticksWhenGated { return frozen }
        let elapsed = now() &- loadedAt
        return MonotonicClock.ticks(in: elapsed, atHertz: Self.hertz)
    }

    /// The count as the counter holds it now.
    func count(_ index: Int) -> UInt16 {
        let channel = channels[index]
        guard let ticks = ticks(index) else { return 0 }
        let reload = UInt64(channel.reload)
        switch channel.mode {
        case 2, 3:
            // Periodic; mode 3 counts down by two each tick, through the count twice.
            let step: UInt64 = channel.mode == 3 ? 2 : 1
            let period = channel.mode == 3 ? reload / 2 : reload
            let position = ticks % max(period, 1)
            return UInt16(truncatingIfNeeded: reload - position * step)
        default:
            // One-shot: down to 0, then on through 0xFFFF.
            return UInt16(truncatingIfNeeded: reload &- ticks)
        }
    }

    /// The channel's output pin.
    func output(_ index: Int) -> Bool {
        let channel = channels[index]
        guard let ticks = ticks(index) else { return channel.mode != 0 }
        let reload = UInt64(channel.reload)
        switch channel.mode {
        case 0, 1: return ticks >= reload  // high at terminal count, and stays
        case 2: return ticks % reload != reload - 1  // low for the tick at count 1
        case 3: return ticks % reload < (reload + 1) / 2  // high for the first half of each period
        default: return ticks != reload  // strobe: low for the tick at 0
        }
    }

    /// Channel 2's gate, from port 0x61 bit 0: a rising edge restarts a periodic count; while
    /// it is low, a one-shot count holds.
    func setGate2(_ high: Bool) {
        var channel = channels[2]
        guard channel.gate != high else { return }
        if high {
            if let frozen = channel.ticksWhenGated, channel.loadedAt != nil, channel.mode == 0 || channel.mode == 4 {
                // Resume where it held: move the start back by the ticks already counted.
                channel.loadedAt = now() &- frozen * 1_000_000_000 / Self.hertz
            } else if channel.loadedAt != nil {
                channel.loadedAt = now()
            }
            channel.ticksWhenGated = nil
        } else {
            channel.ticksWhenGated = ticks(2) ?? 0
        }
        channel.gate = high
        channels[2] = channel
    }

    var gate2: Bool { channels[2].gate }
}

/// Port 0x61, the PC's system control port B: bit 0 gates PIT channel 2, bit 1 enables the
/// speaker (silent here), bit 4 toggles with the memory refresh (here: with every read, so
/// loops that wait for it end), bit 5 is channel 2's output.
public final class SystemControlPort: BusDevice {
    public static let port: UInt64 = 0x61
    private let timer: ProgrammableIntervalTimer
    private var speaker = false
    private var refresh = false

    public init(timer: ProgrammableIntervalTimer) { self.timer = timer }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        refresh.toggle()
        let value: UInt8 =
            (timer.gate2 ? 1 : 0) | (speaker ? 2 : 0) | (refresh ? 0x10 : 0) | (timer.output(2) ? 0x20 : 0)
        data.storeLittleEndian(UInt64(value))
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        let value = UInt8(truncatingIfNeeded: data.littleEndianValue)
        speaker = value & 2 != 0
        timer.setGate2(value & 1 != 0)
    }
}
