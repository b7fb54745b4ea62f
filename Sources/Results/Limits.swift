/// The ranges hvbench accepts for every count and duration, wherever it comes from (the CLI, a
/// suite YAML file, results.json). One table, so the three readers cannot disagree, and so that
/// no product of two accepted values (iterations x repetitions, seconds as nanoseconds)
/// overflows the integer it is kept in.
public enum Limits {
    /// Operations per repetition: 10^12 at ~1 ns each is already 15 minutes.
    public static let iterations: ClosedRange<UInt64> = 1...1_000_000_000_000
    public static let repetitions: ClosedRange<Int> = 1...10_000
    /// Rounds of a run: each one boots every (system, benchmark) pair once.
    public static let rounds: ClosedRange<Int> = 1...1_000
    public static let warmups: ClosedRange<Int> = 0...1_000
    /// Watchdog seconds for one guest or native process: up to a day.
    public static let timeoutSeconds: ClosedRange<Double> = 1...86_400
    /// Working set of the memory benchmarks: a page up to 2 GiB (guest RAM is at most 3 GiB).
    public static let sizeBytes: ClosedRange<UInt64> = 4096...(2 << 30)
    public static let slowdownPercent: ClosedRange<UInt64> = 0...1_000
    /// Adaptive runs: seconds per benchmark.
    public static let budgetSeconds: ClosedRange<Double> = 1...86_400
    /// Thresholds and margins, in percent.
    public static let thresholdPercent: ClosedRange<Double> = 0...10_000
    public static let margin: ClosedRange<Double> = 0.1...100

    /// "NAME must be between A and B" for an out-of-range value; nil when it is in range.
    public static func check<T: Comparable>(_ value: T, in range: ClosedRange<T>, _ name: String) -> String? {
        range.contains(value) ? nil : "\(name) must be between \(range.lowerBound) and \(range.upperBound) (got \(value))"
    }

    /// Like `check`, and a non-finite value (nan, inf) is out of range too.
    public static func check(_ value: Double, in range: ClosedRange<Double>, _ name: String) -> String? {
        value.isFinite && range.contains(value)
            ? nil
            : "\(name) must be between \(formatted(range.lowerBound)) and \(formatted(range.upperBound)) (got \(value))"
    }

    private static func formatted(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}
