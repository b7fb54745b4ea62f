import Foundation
import Testing

@testable import Results

@Suite struct ABComparisonTests {
    /// A run of one round whose cpu.int ns_per_op median is `value`.
    func round(_ value: Double, system: String = "native", status: ResultStatus = .ok) -> RunResults {
        var result = run([system: [value * 0.999, value, value * 1.001]], benchmark: "cpu.int")
        if status != .ok {
            result.results[0].status = status
            result.results[0].reason = "watchdog"
            result.results[0].metrics = []
        }
        return result
    }

    func drifting(_ count: Int, seed: UInt64) -> [Double] {
        var generator = SplitMix64(seed: seed)
        // Rounds drift by up to ±30% (time blocks on a shared host); A and B share each round's drift.
        return (0..<count).map { _ in 100 * (1 + 0.3 * (Double(generator.next() % 2001) / 1000 - 1)) }
    }

    @Test func aSlowdownIsFoundThroughDriftThatWouldHideItUnpaired() throws {
        let drift = drifting(12, seed: 1)
        var generator = SplitMix64(seed: 2)
        let pairs = drift.map { level -> (a: RunResults, b: RunResults) in
            let jitter = 1 + 0.01 * (Double(generator.next() % 2001) / 1000 - 1)
            return (round(level), round(level * 1.10 * jitter))
        }
        let report = ABComparison.compare(rounds: pairs)
        let metric = try #require(report.metrics.first { $0.metric == "ns_per_op" })
        #expect(metric.verdict == .regression, "\(metric)")
        #expect(abs((metric.changePercent ?? 0) - 10) < 2)
        #expect(metric.changeInterval.map { $0[0] > 5 && $0[1] < 15 } == true, "\(metric.changeInterval ?? [])")
        #expect(report.exitCode == 2)
        // The same samples unpaired: the drift swamps the 10%.
        let unpaired = MannWhitney.pValue(
            pairs.map { $0.a.results[0].metrics[0].summary.median }, pairs.map { $0.b.results[0].metrics[0].summary.median })
        #expect(unpaired > 0.01)
    }

    @Test func identicalArmsAreNotFlagged() {
        let drift = drifting(12, seed: 3)
        var generator = SplitMix64(seed: 4)
        let pairs = drift.map { level -> (a: RunResults, b: RunResults) in
            (round(level * (1 + 0.02 * (Double(generator.next() % 2001) / 1000 - 1))), round(level))
        }
        let report = ABComparison.compare(rounds: pairs)
        #expect(report.exitCode == 0, "\(report.metrics.map { "\($0.metric) \($0.verdict) p=\($0.pValue ?? 1)" })")
    }

    @Test func aMetricThatBLosesFailsTheGate() {
        let pairs = (0..<10).map { index in (round(100), index == 4 ? round(100, status: .failed) : round(100)) }
        let report = ABComparison.compare(rounds: pairs)
        #expect(report.exitCode == 2)
        #expect(report.lost.first?.reason == "round 5: failed: watchdog")
    }

    /// The finding: 2 benchmarks x 2 systems measured a 10% slowdown in all 10 rounds and ab
    /// flagged nothing, its 8 metrics being 4 measured quantities. As 4 hypotheses, the 10 rounds
    /// (all slower) decide.
    @Test func aConsistentSlowdownOverTwoBenchmarksAndTwoModesIsFlagged() throws {
        func arm(_ factor: Double, round: Int) -> RunResults {
            var result = run(
                ["native": [100, 101, 102], "hardware-assist": [200, 201, 202]], benchmark: "cpu.int", rounds: false)
            result.results +=
                run(["native": [50, 51, 52], "hardware-assist": [90, 91, 92]], benchmark: "cpu.pio", rounds: false)
                .results
            for index in result.results.indices {
                let drift = 1 + 0.03 * Double((round * 7 + index) % 5) / 4
                let values = result.results[index].metrics[0].samples.map { $0 * factor * drift }
                result.results[index].metrics = [
                    Metric(MetricSamples(name: "ns_per_op", unit: "ns", better: .lower, values: values)),
                    Metric(MetricSamples(name: "throughput", unit: "Mops/s", better: .higher, values: values.map { 1e3 / $0 })),
                ]
            }
            return result
        }
        let pairs: [(a: RunResults, b: RunResults)] = (0..<10).map { round in
            (arm(1, round: round), arm(1.1 + 0.002 * Double(round % 3), round: round))
        }
        #expect(ABComparison.hypotheses(in: pairs[0].a) == 4)
        let report = ABComparison.compare(rounds: pairs)
        #expect(
            report.regressions.count == 8,
            "\(report.metrics.map { "\($0.system) \($0.benchmark) \($0.metric) \($0.verdict) p=\($0.pValue ?? 1)" })")
        #expect(!report.warnings.contains { $0.hasPrefix("too few rounds") })
        #expect(ABComparison.roundsNeeded(hypotheses: 1, alpha: 0.01) == 18)
        #expect(ABComparison.roundsNeeded(hypotheses: 4, alpha: 0.01) == 24)
        #expect(ABComparison.roundsNeeded(hypotheses: 73, alpha: 0.01) == 38)
        // At 24 rounds for 4 hypotheses, a change seen in 4 rounds of 5 — the others reversed,
        // however far — still decides.
        let mostly = (0..<24).map { $0 % 6 == 0 ? -5.0 : 0.1 }  // 4 of 24 reversed
        #expect(ABComparison.signTestPValue(mostly) * 4 < 0.01)
    }

    /// The sign test: only directions count, so one wild round does not hide a consistent change
    /// (the mean of these log-ratios is negative, yet B was slower in 11 rounds of 12).
    @Test func oneWildRoundDoesNotHideAConsistentChange() {
        let values = [0.1, 0.12, 0.09, 0.11, 0.1, 0.1, -2.0, 0.1, 0.13, 0.08, 0.1, 0.11]
        #expect(values.reduce(0, +) < 0)
        #expect(abs(ABComparison.signTestPValue(values) - 2.0 * 13 / 4096) < 1e-12)
        #expect(ABComparison.signTestPValue([0, 0, 0.1]) == 1)  // unchanged rounds are left out
        #expect(ABComparison.binomialLowerTail(3, trials: 18) > 0.0037 && ABComparison.binomialLowerTail(3, trials: 18) < 0.0038)
        #expect(ABComparison.binomialLowerTail(1500, trials: 3000) > 0.5)
    }

    @Test func signTestPValuesAndTheRoundsNeeded() {
        #expect(ABComparison.signTestPValue([1, 1, 1, 1]) == 2.0 / 16)
        #expect(ABComparison.signTestPValue([1, -1, 1, -1]) == 1)
        #expect(ABComparison.smallestPValue(rounds: 8) == 2.0 / 256)
        // Five rounds can never reach 0.01: the report says so.
        let report = ABComparison.compare(rounds: (0..<5).map { _ in (round(100), round(150)) })
        #expect(report.warnings.contains { $0.hasPrefix("too few rounds") })
        #expect(report.exitCode == 0)
    }

    /// ab-rates on a pool whose rounds drift together: the unslowed arms against each other are
    /// never flagged, a 30% slowdown always is, and the pool loads from ARM-rNNN folders.
    @Test func gateRatesFromAPool() throws {
        let drift = drifting(20, seed: 5)
        var generator = SplitMix64(seed: 6)
        func jitter() -> Double { 1 + 0.01 * (Double(generator.next() % 2001) / 1000 - 1) }
        let pool = GateRates.Pool(
            rounds: drift.map { level in
                ["a1": round(level * jitter()), "a2": round(level * jitter()), "s30": round(level * 1.3 * jitter())]
            })
        let quiet = GateRates.measure(pool: pool, control: ["a1", "a2"], treatment: "a2", rounds: 18, comparisons: 20)
        #expect(quiet.comparisons == 20 && quiet.hypotheses == 1)
        #expect(quiet.anyFlagged == 0 && quiet.detectionRate == 0)
        let slowed = GateRates.measure(pool: pool, control: ["a1", "a2"], treatment: "s30", rounds: 18, comparisons: 20)
        #expect(slowed.anyFlagged == 20 && slowed.detectionRate == 1, "\(slowed.flagged)")
        #expect(slowed.flagged == ["native cpu.int ns_per_op": 20])
        // Too few rounds in the pool for the comparison asked: nothing is drawn.
        #expect(GateRates.measure(pool: pool, control: ["a1"], treatment: "s30", rounds: 21, comparisons: 5).comparisons == 0)

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-pool-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        for (index, round) in pool.rounds.prefix(3).enumerated() {
            for (arm, run) in round {
                let file = folder.appendingPathComponent(String(format: "%@-r%03d/results.json", arm, index + 1))
                try writeAtomically(try run.encoded(), to: file)
            }
        }
        try writeAtomically(Data("{".utf8), to: folder.appendingPathComponent("a1-r004/results.json"))
        let (loaded, problems) = GateRates.Pool.load(from: folder)
        #expect(loaded.rounds.count == 3 && loaded.rounds.allSatisfy { Set($0.keys) == ["a1", "a2", "s30"] })
        #expect(problems.count == 1)
    }
}
