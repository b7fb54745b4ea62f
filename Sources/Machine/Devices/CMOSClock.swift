#if canImport(Glibc)
    import Glibc
#endif

/// The PC's MC146818 real-time clock and its CMOS RAM, at ports 0x70 (index; bit 7 is the NMI
/// mask, which has nothing to mask here) and 0x71 (data). The clock reads the host's UTC time
/// when asked, in BCD or binary and 24- or 12-hour form as status register B says; no update
/// is ever in progress and no RTC interrupt is raised. The rest is 128 bytes of RAM with the
/// bytes firmware leaves for an OS: the shutdown status (0x0F), which the multiprocessor
/// warm-reset path uses, and the memory sizes at QEMU's offsets.
public final class CMOSClock: BusDevice {
    public static let base: UInt64 = 0x70
    public static let length: UInt64 = 2

    enum Register {
        static let seconds = 0x00, minutes = 0x02, hours = 0x04, weekday = 0x06, day = 0x07, month = 0x08
        static let year = 0x09, statusA = 0x0A, statusB = 0x0B, statusC = 0x0C, statusD = 0x0D
        static let shutdownStatus = 0x0F, century = 0x32
    }

    private var index = 0
    private var ram = [UInt8](repeating: 0, count: 128)
    /// Seconds since the Unix epoch, UTC.
    private let now: () -> Int

    /// - Parameters:
    ///   - memorySize: guest RAM in bytes, for the memory-size bytes.
    ///   - now: the clock (tests give their own).
    public init(memorySize: UInt64, now: @escaping () -> Int = { Int(time(nil)) }) {
        self.now = now
        ram[Register.statusA] = 0x26  // 32.768 kHz time base, 1024 Hz rate
        ram[Register.statusB] = 0x02  // 24-hour, BCD
        ram[Register.statusD] = 0x80  // the RAM and time are valid
        // Base memory 640 KiB; memory from 1 to 64 MiB in KiB (at 0x17 and 0x30); memory above
        // 16 MiB in 64 KiB units (0x34), as QEMU fills them for SeaBIOS.
        store16(640, at: 0x15)
        let extendedKiB = UInt16(min(max(memorySize, 1 << 20) - (1 << 20), 63 << 20) >> 10)
        store16(extendedKiB, at: 0x17)
        store16(extendedKiB, at: 0x30)
        store16(UInt16(min(memorySize > 16 << 20 ? (memorySize - (16 << 20)) >> 16 : 0, 0xFFFF)), at: 0x34)
    }

    private func store16(_ value: UInt16, at offset: Int) {
        ram[offset] = UInt8(truncatingIfNeeded: value)
        ram[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        guard offset == 1 else {
            data.storeLittleEndian(UInt64(index))  // the index port reads back (some chipsets do)
            return
        }
        data.storeLittleEndian(UInt64(readRegister(index)))
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        let value = UInt8(truncatingIfNeeded: data.littleEndianValue)
        if offset == 0 {
            index = Int(value & 0x7F)
            return
        }
        switch index {
        case Register.statusC, Register.statusD: break  // read-only
        case Register.statusA: ram[index] = value & 0x7F  // UIP is read-only
        default: ram[index] = value
        }
    }

    private func readRegister(_ register: Int) -> UInt8 {
        switch register {
        case Register.seconds, Register.minutes, Register.hours, Register.weekday, Register.day, Register.month,
            Register.year, Register.century:
            return clockField(register)
        case Register.statusC: return 0  // no interrupt flags: nothing is ever raised
        default: return ram[register]
        }
    }

    /// One field of the current UTC time in the format register B asks for.
    private func clockField(_ register: Int) -> UInt8 {
        var seconds = time_t(now())
        var fields = tm()
        gmtime_r(&seconds, &fields)
        let binary = ram[Register.statusB] & 0x04 != 0
        let twentyFourHour = ram[Register.statusB] & 0x02 != 0
        func encode(_ value: Int) -> UInt8 { binary ? UInt8(value) : UInt8((value / 10) << 4 | value % 10) }
        let year = Int(fields.tm_year) + 1900
        switch register {
        case Register.seconds: return encode(Int(fields.tm_sec))
        case Register.minutes: return encode(Int(fields.tm_min))
        case Register.hours:
            let hour = Int(fields.tm_hour)
            if twentyFourHour { return encode(hour) }
            let twelve = hour % 12 == 0 ? 12 : hour % 12
            return encode(twelve) | (hour >= 12 ? 0x80 : 0)  // bit 7: PM
        case Register.weekday: return encode(Int(fields.tm_wday) + 1)  // Sunday is 1
        case Register.day: return encode(Int(fields.tm_mday))
        case Register.month: return encode(Int(fields.tm_mon) + 1)
        case Register.year: return encode(year % 100)
        default: return encode(year / 100)  // the century, at 0x32 as ACPI's FADT would name it
        }
    }
}
