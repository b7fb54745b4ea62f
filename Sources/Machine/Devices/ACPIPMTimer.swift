/// The ACPI power-management timer: a free-running 32-bit counter at 3.579545 MHz, read at the
/// port the FADT names (PM_TMR_BLK, `FirmwareTables.pmTimerPort`). Linux uses it as a reference
/// for TSC calibration and as a clocksource (acpi_pm). Computed from the host's monotonic clock
/// when read; writes are ignored, as on hardware.
public final class ACPIPMTimer: BusDevice {
    public static let length: UInt64 = 4
    public static let hertz: UInt64 = 3_579_545
    private let now: () -> UInt64
    private let start: UInt64

    /// - Parameter now: nanoseconds of a monotonic clock (tests give their own).
    public init(now: @escaping () -> UInt64 = MonotonicClock.nanoseconds) {
        self.now = now
        start = now()
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let elapsed = now() &- start
        let ticks = MonotonicClock.ticks(in: elapsed, atHertz: Self.hertz)
        // A read of part of the register gets those bytes of it.
        data.storeLittleEndian(UInt64(UInt32(truncatingIfNeeded: ticks)) >> (8 * min(offset, 3)))
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {}
}
