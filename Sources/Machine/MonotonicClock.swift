#if canImport(Glibc)
    import Glibc
#endif

/// Nanoseconds on CLOCK_MONOTONIC: the clock every host-side duration in hvbench uses.
public enum MonotonicClock {
    @inline(__always)
    public static func nanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// Ticks of a `hertz` clock in `nanoseconds` (a timer device's count), without overflow.
    public static func ticks(in nanoseconds: UInt64, atHertz hertz: UInt64) -> UInt64 {
        UInt64(1_000_000_000).dividingFullWidth(nanoseconds.multipliedFullWidth(by: hertz)).quotient
    }
}
