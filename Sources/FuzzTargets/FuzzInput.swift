/// Reads a fuzzer's bytes as a little program: values are taken from the front, and an
/// exhausted input reads as zeros, so every byte string is a valid (if short) program.
struct FuzzInput {
    private let bytes: [UInt8]
    private var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isExhausted: Bool { position >= bytes.count }

    mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func value(width: Int) -> UInt64 {
        (0..<width).reduce(UInt64(0)) { $0 | UInt64(byte()) << (8 * UInt64($1)) }
    }

    /// 1, 2, 4 or 8.
    mutating func width() -> Int { 1 << Int(byte() % 4) }

    /// Up to `count` bytes, fewer when the input ends.
    mutating func take(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, position + count)
        defer { position = end }
        return Array(bytes[min(position, end)..<end])
    }
}

/// A fuzz target's verdict on one input: nil when every property held, else what broke.
/// libFuzzer stops on a crash, so the entry point traps on a violated property (that is how a
/// property violation becomes a reproducible crash file).
public typealias FuzzProperty = String?

/// The targets `hvbench-fuzz` and the corpus tests run, by name.
public enum FuzzTargets {
    public static let all: [(name: String, run: @Sendable ([UInt8]) -> FuzzProperty)] = [
        ("result-lines", ResultLineFuzz.run),
        ("suite-yaml", SuiteYAMLFuzz.run),
        ("results-json", ResultsJSONFuzz.run),
        ("x86", X86Fuzz.run),
        ("e1000", DeviceFuzz.e1000),
        ("ide", DeviceFuzz.ide),
        ("virtio", DeviceFuzz.virtio),
        ("pci", DeviceFuzz.pci),
    ]

    public static func named(_ name: String) -> (@Sendable ([UInt8]) -> FuzzProperty)? {
        all.first { $0.name == name }?.run
    }
}
