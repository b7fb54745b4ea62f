import Testing

@testable import Results

@Suite struct ResultLineTests {
    @Test func parsesEveryKind() throws {
        #expect(try ResultLine.parse("HVB1 hello guest=hvbench-guest-1") == .hello(guest: "hvbench-guest-1"))
        #expect(
            try ResultLine.parse("HVB1 begin bench=cpu.int cpl=3 iterations=10 repetitions=2 warmups=1")
                == .begin(bench: "cpu.int", privilegeLevel: 3, iterations: 10, repetitions: 2, warmups: 1))
        #expect(try ResultLine.parse("HVB1 begin bench=vm.boot cpl=3") == .beginBoot(bench: "vm.boot", privilegeLevel: 3))
        #expect(
            try ResultLine.parse("HVB1 sample bench=cpu.int rep=0 ops=10 cycles=5494 bytes=0")
                == .sample(bench: "cpu.int", repetition: 0, operations: 10, cycles: 5494, bytes: 0))
        #expect(try ResultLine.parse("HVB1 end bench=cpu.int") == .end(bench: "cpu.int"))
        #expect(
            try ResultLine.parse("HVB1 end bench=net.rr-irq interrupts=1200 spurious=600")
                == .end(bench: "net.rr-irq", interrupts: GuestInterruptCounts(taken: 1200, spurious: 600, operations: 0)))
        #expect(try ResultLine.parse("HVB1 skip bench=cpu.pio reason=no-port") == .skip(bench: "cpu.pio", reason: "no-port"))
        #expect(try ResultLine.parse("HVB1 fail reason=missing-bench") == .fail(bench: nil, reason: "missing-bench"))
        #expect(
            try ResultLine.parse("HVB1 fault vector=13 error=0x0 rip=0x10345b cr2=0x0 cpl=3")
                == .fault(vector: 13, error: 0, rip: 0x10345b, cr2: 0, privilegeLevel: 3))
        #expect(try ResultLine.parse("HVB1 done") == .done)
    }

    @Test func ignoresConsoleText() throws {
        #expect(try ResultLine.parse("SeaBIOS (version 1.16.2)") == nil)
        #expect(try ResultLine.parse("hvb1 sample lowercase is text") == nil)
    }

    @Test(arguments: [
        "HVB1 ",  // no kind
        "HVB1 sample bench=cpu.int rep=0 ops=10 cycles=12",  // missing bytes
        "HVB1 sample bench=cpu.int rep=0 ops=10 cycles=-12 bytes=0",  // not unsigned
        "HVB1 sample bench=cpu.int rep=0 ops=10 cycles=1e3 bytes=0",  // not an integer
        "HVB1 sample bench=cpu.int rep=0 ops=10 cycles=12 bytes=0 extra=1",  // unknown key
        "HVB1 sample bench=cpu.int rep=0 rep=1 ops=10 cycles=12 bytes=0",  // duplicate
        "HVB1 sample bench=cpu.int rep=0  ops=10 cycles=12 bytes=0",  // double space
        "HVB1 sample bench=cpu.int rep ops=10 cycles=12 bytes=0",  // not key=value
        "HVB1 teleport bench=cpu.int",  // unknown kind
        "HVB1 end bench=",  // empty value
        "HVB1 end Bench=cpu.int",  // bad key
        "HVB1 sample bench=cpu.int rep=0 ops=10 cycles=99999999999999999999999 bytes=0",  // overflow
        // A guest's numbers are range-checked, never converted with a trap:
        "HVB1 begin bench=cpu.int cpl=18446744073709551615 iterations=1 repetitions=1 warmups=0",  // cpl above Int.max
        "HVB1 begin bench=vm.boot cpl=4",  // x86 has four privilege levels
        "HVB1 fault vector=13 error=0x0 rip=0x1 cr2=0x0 cpl=9223372036854775808",
        "HVB1 hist bench=cpu.pio buckets=99999:1",  // bucket index beyond the log-linear range
        "HVB1 end bench=net.rr-irq interrupts=10 spurious=11",  // more spurious than taken
        "HVB1 end bench=net.rr-irq interrupts=10",  // half of the pair
        "HVB1 end bench=net.rr-irq interrupts=18446744073709551615 spurious=0",  // would overflow a sum
    ])
    func rejectsMalformedLines(_ line: String) {
        #expect(throws: ResultLine.ParseError.self) { try ResultLine.parse(line) }
    }
}

@Suite struct GuestNumberRangeTests {
    func transcript(_ lines: [String]) -> String {
        (["HVB1 begin bench=cpu.pio cpl=3 iterations=10 repetitions=1 warmups=0"] + lines + [
            "HVB1 end bench=cpu.pio", "HVB1 done",
        ]).joined(separator: "\n")
    }

    /// Counts that would overflow UInt64 when summed (or Int when converted) are a broken
    /// transcript, so the benchmark fails with the line quoted instead of the VMM trapping.
    @Test func histogramCountsPastTheLimitAreRejected() throws {
        let huge = transcript([
            "HVB1 sample bench=cpu.pio rep=0 ops=10 cycles=100 bytes=0",
            "HVB1 hist bench=cpu.pio buckets=20:18446744073709551615,21:18446744073709551615",
        ])
        do {
            _ = try BenchmarkTranscript.parse(console: huge, bench: "cpu.pio")
            Issue.record("an overflowing histogram parsed")
        } catch let error as ResultLine.ParseError {
            #expect(error.problem.contains("histogram counts more than"))
        }
        // Two lines that are each fine but together pass the limit.
        let half = LatencyBuckets.maximumOperations / 2 + 1
        let split = transcript([
            "HVB1 sample bench=cpu.pio rep=0 ops=10 cycles=100 bytes=0", "HVB1 hist bench=cpu.pio buckets=20:\(half)",
            "HVB1 hist bench=cpu.pio buckets=21:\(half)",
        ])
        #expect(throws: ResultLine.ParseError.self) { try BenchmarkTranscript.parse(console: split, bench: "cpu.pio") }
        let fine = transcript([
            "HVB1 sample bench=cpu.pio rep=0 ops=10 cycles=100 bytes=0", "HVB1 hist bench=cpu.pio buckets=20:5,21:7",
        ])
        #expect(try BenchmarkTranscript.parse(console: fine, bench: "cpu.pio").latency.operations == 12)
    }

    /// cycles=0 would make every rate infinite (and results.json unreadable before the fix).
    @Test func aRepetitionOfZeroCyclesIsRejected() {
        let zero = transcript(["HVB1 sample bench=cpu.pio rep=0 ops=10 cycles=0 bytes=0"])
        #expect(throws: ResultLine.ParseError.self) { try BenchmarkTranscript.parse(console: zero, bench: "cpu.pio") }
    }
}

@Suite struct TranscriptTests {
    let good = """
        SeaBIOS noise
        HVB1 hello guest=hvbench-guest-1
        HVB1 begin bench=cpu.int cpl=3 iterations=10 repetitions=2 warmups=0
        HVB1 sample bench=cpu.int rep=0 ops=10 cycles=100 bytes=0
        HVB1 sample bench=cpu.int rep=1 ops=10 cycles=120 bytes=0
        HVB1 end bench=cpu.int
        HVB1 done
        """

    @Test func collectsSamplesInOrder() throws {
        let transcript = try BenchmarkTranscript.parse(console: good, bench: "cpu.int")
        #expect(transcript.status == .ok)
        #expect(transcript.privilegeLevel == 3)
        #expect(transcript.samples.map(\.cycles) == [100, 120])
    }

    @Test func carriageReturnsAreTolerated() throws {
        let transcript = try BenchmarkTranscript.parse(
            console: good.replacingOccurrences(of: "\n", with: "\r\n"), bench: "cpu.int")
        #expect(transcript.samples.count == 2)
    }

    @Test func rejectsOutOfOrderRepetitionsAndForeignBenchmarks() {
        let swapped = good.replacingOccurrences(of: "rep=1", with: "rep=5")
        #expect(throws: ResultLine.ParseError.self) { try BenchmarkTranscript.parse(console: swapped, bench: "cpu.int") }
        #expect(throws: ResultLine.ParseError.self) { try BenchmarkTranscript.parse(console: good, bench: "cpu.pio") }
        let noBegin = good.replacingOccurrences(
            of: "HVB1 begin bench=cpu.int cpl=3 iterations=10 repetitions=2 warmups=0\n", with: "")
        #expect(throws: ResultLine.ParseError.self) { try BenchmarkTranscript.parse(console: noBegin, bench: "cpu.int") }
    }

    @Test func aTruncatedTranscriptIsAFailure() throws {
        let truncated = good.replacingOccurrences(of: "HVB1 done", with: "")
        let transcript = try BenchmarkTranscript.parse(console: truncated, bench: "cpu.int")
        #expect(transcript.status == .failed("guest output ended without a done line"))
        let silent = try BenchmarkTranscript.parse(console: "nothing here", bench: "cpu.int")
        if case .failed = silent.status {} else { Issue.record("silence must be a failure") }
    }

    @Test func reportsFaultsAndSkips() throws {
        let fault = try BenchmarkTranscript.parse(
            console: "HVB1 fault vector=14 error=0x4 rip=0x1000 cr2=0xdead cpl=3\n", bench: "cpu.int")
        #expect(fault.status == .failed("unexpected exception vector 14 (error 0x4) at rip 0x1000, cr2 0xdead, CPL3"))
        let skip = try BenchmarkTranscript.parse(console: "HVB1 skip bench=cpu.pio reason=none\nHVB1 done\n", bench: "cpu.pio")
        #expect(skip.status == .skipped("none"))
    }
}
