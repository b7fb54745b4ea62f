import CHostTimer
import Machine

/// The host TSC frequency, measured once per process against CLOCK_MONOTONIC over 200 ms.
public enum TSC {
    public static let calibratedKilohertz: Int = {
        let startNanoseconds = MonotonicClock.nanoseconds()
        let startCycles = chosttimer_rdtsc()
        while MonotonicClock.nanoseconds() - startNanoseconds < 200_000_000 {}
        let cycles = chosttimer_rdtsc() - startCycles
        let nanoseconds = MonotonicClock.nanoseconds() - startNanoseconds
        return Int((Double(cycles) / Double(nanoseconds) * 1e6).rounded())
    }()
}
