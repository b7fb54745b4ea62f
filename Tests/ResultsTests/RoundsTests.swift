import Foundation
import Testing

@testable import Results

@Suite struct RoundsTests {
    func result(_ values: [Double], status: ResultStatus = .ok, reason: String? = nil) -> BenchmarkResult {
        BenchmarkResult(
            system: "native", benchmark: "cpu.int", status: status, reason: reason, repetitions: values.count,
            metrics: status == .ok ? [Metric(MetricSamples(name: "ns_per_op", unit: "ns", better: .lower, values: values))] : [])
    }

    @Test func roundsCombineIntoPerRoundValuesAndASummaryAcrossRounds() throws {
        let combined = BenchmarkResult.combining(rounds: [result([10, 12]), result([20, 22]), result([30, 32])])
        let metric = try #require(combined.metrics.first)
        #expect(metric.samples == [10, 12, 20, 22, 30, 32], "repetitions are kept")
        #expect(metric.roundValues == [11, 21, 31])
        #expect(metric.summary.median == 21, "the median across rounds")
        #expect(metric.replicates == [11, 21, 31])
        #expect(combined.rounds == 3)
        #expect(combined.repetitions == 6)
    }

    @Test func aFailedRoundFailsThePairAndASkipSkipsIt() {
        let failed = BenchmarkResult.combining(rounds: [result([1, 2]), result([], status: .failed, reason: "watchdog")])
        #expect(failed.status == .failed && failed.reason == "round 2: watchdog" && failed.metrics.isEmpty)
        let skipped = BenchmarkResult.combining(rounds: [
            result([], status: .skipped, reason: "no KVM"), result([], status: .skipped),
        ])
        #expect(skipped.status == .skipped && skipped.reason == "no KVM")
        #expect(BenchmarkResult.combining(rounds: [result([5, 6])]).metrics[0].roundValues == nil, "one round: as before")
    }

    /// Drift between rounds falls on both systems of a round alike; pairing by round cancels it.
    @Test func ratiosArePairedByRound() throws {
        let a = Metric(
            MetricSamples(name: "t", unit: "x", better: .higher, values: [100, 200, 300]), roundValues: [100, 200, 300])
        let b = Metric(
            MetricSamples(name: "t", unit: "x", better: .higher, values: [50, 100, 150]), roundValues: [50, 100, 150])
        let paired = try #require(a.ratio(to: b))
        #expect(paired.ratio == 2 && paired.low == 2 && paired.high == 2)
        // Without rounds the same values look like two overlapping distributions.
        let unpaired = try #require(Summary.ratioInterval(a.samples, b.samples))
        #expect(unpaired.high - unpaired.low > 1)
        #expect(Summary.pairedRatioInterval([1, 2], [1]) == nil)
    }

    @Test func theOrderIsAShuffledPermutationPerRoundFromTheSeed() {
        let schedule = Schedule(rounds: 5, seed: 42)
        let orders = (0..<5).map { schedule.permutation(round: $0, count: 6) }
        #expect(orders.allSatisfy { $0.sorted() == Array(0..<6) })
        #expect(Set(orders.map { $0.description }).count > 1, "rounds differ in order")
        #expect(orders == (0..<5).map { Schedule(rounds: 5, seed: 42).permutation(round: $0, count: 6) }, "reproducible")
        #expect(Schedule(rounds: 1, seed: 42).permutation(round: 0, count: 4) == [0, 1, 2, 3])
    }

    @Test func versionOneFilesAreStillRead() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-rounds-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("results.json")
        var json = String(decoding: try sampleRun().encoded(), as: UTF8.self)
        #expect(json.contains("\"schemaVersion\" : 2"))
        json = json.replacingOccurrences(of: "\"schemaVersion\" : 2", with: "\"schemaVersion\" : 1")
        try writeAtomically(Data(json.utf8), to: file)
        #expect(try RunResults.load(from: file).results.count == 3)
    }

    @Test func suitesMayNameTheirRounds() throws {
        let suite = try Suite.parse("name: t\nrounds: 4\nbenchmarks:\n  - id: cpu.int\n", file: "t.yaml")
        #expect(suite.rounds == 4)
        #expect(try Suite.parse("name: t\nbenchmarks:\n  - id: cpu.int\n", file: "t.yaml").rounds == 1)
        #expect(throws: Suite.LoadError.self) {
            try Suite.parse("name: t\nrounds: 0\nbenchmarks:\n  - id: cpu.int\n", file: "t.yaml")
        }
    }
}

@Suite struct PairedFigureTests {
    /// hvbench vs its QEMU peer is a derived figure, paired by round like % of native.
    @Test func hvbenchAgainstQEMUIsAFigurePairedByRound() throws {
        func result(_ system: String, _ rounds: [Double]) -> BenchmarkResult {
            BenchmarkResult(
                system: system, benchmark: "cpu.pio", status: .ok,
                metrics: [
                    Metric(MetricSamples(name: "ns_per_op", unit: "ns", better: .lower, values: rounds), roundValues: rounds)
                ])
        }
        var run = sampleRun()
        // The host drifts 2x across rounds; hvbench is 0.8x QEMU's time in every round.
        run.results = [result("qemu-kvm", [100, 200, 150, 120]), result("hardware-assist", [80, 160, 120, 96])]
        let figure = try #require(
            run.derivedFigures().first { $0.numerator == "hardware-assist" && $0.denominator == "qemu-kvm" })
        #expect(abs(figure.value - 1.25) < 1e-9, "speedup = QEMU's time / hvbench's")
        #expect(abs(figure.ci95Low - 1.25) < 1e-9 && abs(figure.ci95High - 1.25) < 1e-9, "pairing removes the drift")
    }
}
