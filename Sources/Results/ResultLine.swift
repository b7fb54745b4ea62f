/// The guest's (and native runner's) machine-readable output: lines starting with "HVB1 ",
/// a kind, then space-separated key=value pairs. Any other console line is log text.
///
///     HVB1 hello guest=hvbench-guest-1
///     HVB1 begin bench=cpu.int cpl=3 iterations=1000 repetitions=5 warmups=1
///     HVB1 sample bench=cpu.int rep=0 ops=1000 cycles=5494 bytes=0
///     HVB1 hist bench=cpu.pio buckets=171:3,172:950,173:47
///     HVB1 end bench=cpu.int
///     HVB1 end bench=net.rr-irq interrupts=1200 spurious=600
///     HVB1 skip bench=cpu.ptemod reason=no-unprivileged-pte-write-and-invlpg-on-the-host
///     HVB1 fail bench=cpu.syscall reason=syscall-did-not-enter-cpl0
///     HVB1 fault vector=13 error=0x0 rip=0x10345b cr2=0x0 cpl=3
///     HVB1 serving bench=net.rr-irq
///     HVB1 litmus bench=mp iterations=100000 forbidden=0 overlap=99000 relaxed=12
///     HVB1 done
///
/// The parser is strict: a line that starts with "HVB1 " but breaks the grammar is an error,
/// because a silently skipped sample would bias every statistic computed from the rest.
public enum ResultLine: Equatable, Sendable {
    case hello(guest: String)
    case begin(bench: String, privilegeLevel: Int, iterations: UInt64, repetitions: UInt64, warmups: UInt64)
    /// vm.boot's begin line carries only the privilege level.
    case beginBoot(bench: String, privilegeLevel: Int)
    case sample(bench: String, repetition: UInt64, operations: UInt64, cycles: UInt64, bytes: UInt64)
    /// Per-operation latency buckets (see `LatencyBuckets`): index -> operations.
    case histogram(bench: String, buckets: [LatencyBuckets.Bucket])
    /// The -irq variants add the device interrupts the guest's handlers took this boot.
    case end(bench: String, interrupts: GuestInterruptCounts? = nil)
    case skip(bench: String, reason: String)
    case fail(bench: String?, reason: String)
    case fault(vector: UInt64, error: UInt64, rip: UInt64, cr2: UInt64, privilegeLevel: Int)
    /// A VM pair's serving guest is ready and serves until it is stopped.
    case serving(bench: String)
    /// One memory-model litmus test's outcome counts (`hvbench selftest litmus`).
    case litmus(test: String, iterations: UInt64, forbidden: UInt64, overlap: UInt64, relaxed: UInt64)
    case done

    public static let prefix = "HVB1 "

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let line: String
        public let problem: String
        public var description: String { "malformed result line \"\(line)\": \(problem)" }
    }

    /// nil for console text that is not a result line.
    public static func parse(_ line: String) throws -> ResultLine? {
        guard line.hasPrefix(prefix) else { return nil }
        let words = line.dropFirst(prefix.count).split(separator: " ", omittingEmptySubsequences: false)
        guard let kind = words.first, !kind.isEmpty else { throw ParseError(line: line, problem: "no kind after HVB1") }
        var fields: [String: String] = [:]
        for word in words.dropFirst() {
            guard let equals = word.firstIndex(of: "=") else {
                throw ParseError(line: line, problem: "\"\(word)\" is not key=value")
            }
            let key = String(word[..<equals])
            let value = String(word[word.index(after: equals)...])
            guard !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }) else {
                throw ParseError(line: line, problem: "bad key \"\(key)\"")
            }
            guard !value.isEmpty, value.allSatisfy({ $0.isASCII && $0 > " " && $0 <= "~" && $0 != "=" }) else {
                throw ParseError(line: line, problem: "bad value for \(key)")
            }
            guard fields.updateValue(value, forKey: key) == nil else {
                throw ParseError(line: line, problem: "duplicate key \(key)")
            }
        }
        var reader = FieldReader(line: line, fields: fields)
        let result: ResultLine
        switch kind {
        case "hello": result = .hello(guest: try reader.text("guest"))
        case "begin":
            let bench = try reader.text("bench")
            let level = try reader.privilegeLevel()
            if reader.remaining.isEmpty {
                result = .beginBoot(bench: bench, privilegeLevel: level)
            } else {
                result = .begin(
                    bench: bench, privilegeLevel: level, iterations: try reader.number("iterations"),
                    repetitions: try reader.number("repetitions"), warmups: try reader.number("warmups"))
            }
        case "sample":
            result = .sample(
                bench: try reader.text("bench"), repetition: try reader.number("rep"), operations: try reader.number("ops"),
                cycles: try reader.number("cycles"), bytes: try reader.number("bytes"))
        case "hist":
            let bench = try reader.text("bench")
            result = .histogram(bench: bench, buckets: try LatencyBuckets.parse(try reader.text("buckets"), line: line))
        case "end":
            let bench = try reader.text("bench")
            var interrupts: GuestInterruptCounts?
            if reader.remaining["interrupts"] != nil || reader.remaining["spurious"] != nil {
                let taken = try reader.number("interrupts")
                let spurious = try reader.number("spurious")
                // Counts beyond what a boot can take would overflow sums downstream; a spurious
                // count above the total is a broken line.
                guard taken <= GuestInterruptCounts.maximum, spurious <= taken else {
                    throw ParseError(line: line, problem: "interrupts=\(taken) spurious=\(spurious) is out of range")
                }
                interrupts = GuestInterruptCounts(taken: Int(taken), spurious: Int(spurious), operations: 0)
            }
            result = .end(bench: bench, interrupts: interrupts)
        case "skip": result = .skip(bench: try reader.text("bench"), reason: try reader.text("reason"))
        case "fail": result = .fail(bench: reader.optionalText("bench"), reason: try reader.text("reason"))
        case "fault":
            result = .fault(
                vector: try reader.number("vector"), error: try reader.number("error"), rip: try reader.number("rip"),
                cr2: try reader.number("cr2"), privilegeLevel: try reader.privilegeLevel())
        case "serving": result = .serving(bench: try reader.text("bench"))
        case "litmus":
            result = .litmus(
                test: try reader.text("bench"), iterations: try reader.number("iterations"),
                forbidden: try reader.number("forbidden"), overlap: try reader.number("overlap"),
                relaxed: try reader.number("relaxed"))
        case "done": result = .done
        default: throw ParseError(line: line, problem: "unknown kind \"\(kind)\"")
        }
        if let extra = reader.remaining.keys.sorted().first {
            throw ParseError(line: line, problem: "unexpected key \(extra)")
        }
        return result
    }

    private struct FieldReader {
        let line: String
        var remaining: [String: String]
        init(line: String, fields: [String: String]) {
            self.line = line
            self.remaining = fields
        }
        mutating func text(_ key: String) throws -> String {
            guard let value = remaining.removeValue(forKey: key) else { throw ParseError(line: line, problem: "missing \(key)") }
            return value
        }
        mutating func optionalText(_ key: String) -> String? { remaining.removeValue(forKey: key) }
        /// x86 has four privilege levels; anything else is a broken line, never an integer to trap on.
        mutating func privilegeLevel() throws -> Int {
            let level = try number("cpl")
            guard level <= 3 else { throw ParseError(line: line, problem: "cpl=\(level) is not a privilege level (0-3)") }
            return Int(level)
        }
        mutating func number(_ key: String) throws -> UInt64 {
            let value = try text(key)
            let parsed = value.hasPrefix("0x") ? UInt64(value.dropFirst(2), radix: 16) : UInt64(value)
            guard let parsed else { throw ParseError(line: line, problem: "\(key)=\(value) is not an unsigned integer") }
            return parsed
        }
    }
}

/// What one guest boot (or native process) reported about one benchmark.
public struct BenchmarkTranscript: Equatable, Sendable {
    public enum Status: Equatable, Sendable {
        case ok
        case skipped(String)
        case failed(String)
    }

    public struct Sample: Equatable, Sendable {
        public let operations: UInt64
        public let cycles: UInt64
        public let bytes: UInt64
    }

    public var status: Status
    public var privilegeLevel: Int?
    public var samples: [Sample]
    /// Per-operation latency histogram (cycles), for benchmarks that time operations one by one.
    public var latency = LatencyBuckets()
    /// Device interrupts the guest counted (the -irq variants); operations are filled in later.
    public var interrupts: GuestInterruptCounts?

    /// Reads the result lines of a console transcript for `bench`. Sequence errors (a sample
    /// before begin, a repetition out of order, no end, no done) are parse errors.
    public static func parse(console: String, bench: String) throws -> BenchmarkTranscript {
        var transcript = BenchmarkTranscript(
            status: .failed("guest printed no result for \(bench)"), privilegeLevel: nil, samples: [])
        var begun = false
        var ended = false
        var sawDone = false
        // Split on any newline: "\r\n" is one Character in Swift, so splitting on "\n" would not.
        for rawLine in console.split(whereSeparator: \.isNewline) {
            let line = String(rawLine)
            guard let parsed = try ResultLine.parse(line) else { continue }
            func mustBeThis(_ other: String) throws {
                guard other == bench else {
                    throw ResultLine.ParseError(line: line, problem: "result for \(other), expected \(bench)")
                }
            }
            switch parsed {
            case .hello, .serving, .litmus: break
            case .begin(let id, let level, _, _, _), .beginBoot(let id, let level):
                try mustBeThis(id)
                guard !begun else { throw ResultLine.ParseError(line: line, problem: "second begin") }
                begun = true
                transcript.privilegeLevel = level
            case .sample(let id, let repetition, let operations, let cycles, let bytes):
                try mustBeThis(id)
                guard begun, !ended else { throw ResultLine.ParseError(line: line, problem: "sample outside begin/end") }
                guard repetition == UInt64(transcript.samples.count) else {
                    throw ResultLine.ParseError(
                        line: line, problem: "repetition \(repetition) out of order (expected \(transcript.samples.count))")
                }
                guard operations > 0 else { throw ResultLine.ParseError(line: line, problem: "zero operations") }
                // A repetition that took no time has no rate: it would become an infinite metric.
                guard cycles > 0 else { throw ResultLine.ParseError(line: line, problem: "zero cycles") }
                transcript.samples.append(Sample(operations: operations, cycles: cycles, bytes: bytes))
            case .histogram(let id, let buckets):
                try mustBeThis(id)
                guard begun, !ended else { throw ResultLine.ParseError(line: line, problem: "histogram outside begin/end") }
                guard transcript.latency.add(buckets) else {
                    throw ResultLine.ParseError(
                        line: line, problem: "histogram counts more than \(LatencyBuckets.maximumOperations) operations")
                }
            case .end(let id, let interrupts):
                try mustBeThis(id)
                guard begun, !ended else { throw ResultLine.ParseError(line: line, problem: "end without begin") }
                ended = true
                transcript.interrupts = interrupts
                transcript.status = .ok
            case .skip(let id, let reason):
                try mustBeThis(id)
                transcript.status = .skipped(reason)
                ended = true
            case .fail(_, let reason):
                transcript.status = .failed(reason)
                return transcript
            case .fault(let vector, let error, let rip, let cr2, let level):
                transcript.status = .failed(
                    "unexpected exception vector \(vector) (error 0x\(String(error, radix: 16))) at rip 0x\(String(rip, radix: 16)), cr2 0x\(String(cr2, radix: 16)), CPL\(level)"
                )
                return transcript
            case .done:
                sawDone = true
            }
        }
        if case .ok = transcript.status, !sawDone {
            transcript.status = .failed("guest output ended without a done line")
        }
        return transcript
    }
}

/// The guest's log-linear latency buckets: values below 16 cycles exactly, then 16 sub-buckets
/// per power of two (relative error at most 6.25%). Index = 16 + (exponent - 4) * 16 + the four
/// bits after the leading one.
public struct LatencyBuckets: Equatable, Sendable {
    public struct Bucket: Equatable, Sendable {
        public let index: Int
        public let count: UInt64
    }

    public static let highestIndex = 16 + 59 * 16 + 15

    /// The most operations one transcript's histogram may count (2^53: exact as a Double, and
    /// the merged histograms of many rounds still fit an Int). A guest claiming more is broken.
    public static let maximumOperations: UInt64 = 1 << 53

    public private(set) var counts: [Int: UInt64] = [:]
    public private(set) var operations: UInt64 = 0
    public init() {}

    public var isEmpty: Bool { counts.isEmpty }

    /// Adds one transcript's buckets; false (and nothing added) when the total would pass
    /// `maximumOperations`.
    mutating func add(_ buckets: [Bucket]) -> Bool {
        var total = operations
        for bucket in buckets {
            let (sum, overflow) = total.addingReportingOverflow(bucket.count)
            guard !overflow, sum <= Self.maximumOperations else { return false }
            total = sum
        }
        for bucket in buckets { counts[bucket.index, default: 0] += bucket.count }
        operations = total
        return true
    }

    /// Merges the histograms of two rounds (each within `maximumOperations`, so this cannot overflow).
    public mutating func merge(_ other: LatencyBuckets) {
        for (index, count) in other.counts { counts[index, default: 0] += count }
        operations += other.operations
    }

    /// The midpoint of a bucket, in cycles.
    public static func representativeCycles(_ index: Int) -> Double {
        guard index >= 16 else { return Double(index) }
        let exponent = (index - 16) / 16 + 4
        let sub = (index - 16) % 16
        let width = Double(sign: .plus, exponent: exponent - 4, significand: 1)
        return Double(16 + sub) * width + (width - 1) / 2
    }

    static func parse(_ text: String, line: String) throws -> [Bucket] {
        try text.split(separator: ",", omittingEmptySubsequences: false).map { pair in
            let parts = pair.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let index = Int(parts[0]), let count = UInt64(parts[1]), (0...highestIndex).contains(index),
                count > 0
            else { throw ResultLine.ParseError(line: line, problem: "bad histogram bucket \"\(pair)\"") }
            return Bucket(index: index, count: count)
        }
    }
}
