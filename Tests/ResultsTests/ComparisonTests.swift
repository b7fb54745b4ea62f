import Foundation
#if canImport(FoundationXML)
    import FoundationXML
#endif
import Testing

@testable import Results
@testable import Report

@Suite struct MannWhitneyTests {
    @Test func exactPValuesMatchTheTables() {
        // Complete separation of 5 vs 5: 2 / C(10,5) = 2/252.
        #expect(abs(MannWhitney.pValue([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) - 2.0 / 252) < 1e-12)
        // Interleaved samples: no evidence of a difference.
        #expect(MannWhitney.pValue([1, 3, 5, 7, 9], [2, 4, 6, 8, 10]) > 0.5)
        #expect(MannWhitney.pValue([1, 2, 3], [1, 2, 3]) == 1)
        // Symmetric in its arguments.
        #expect(
            MannWhitney.pValue([1, 2, 3, 4, 9], [5, 6, 7, 8, 10]) == MannWhitney.pValue([5, 6, 7, 8, 10], [1, 2, 3, 4, 9]))
    }

    @Test func largeAndTiedSamplesUseTheNormalApproximation() {
        let a = (0..<40).map { Double($0 % 10) }
        let b = (0..<40).map { Double($0 % 10) + 5 }
        #expect(MannWhitney.pValue(a, b) < 1e-6)
        #expect(MannWhitney.pValue(a, a) > 0.9)
    }
}

/// A run whose systems measured `values` of one metric: each value a round's median (`rounds`,
/// what `compare` tests), or the repetitions of a single round.
func run(
    _ systemSamples: [String: [Double]], better: Better = .lower, guest: String = "fnv1a64:1", benchmark: String = "cpu.pio",
    rounds: Bool = true
) -> RunResults {
    var run = sampleRun()
    run.environment.guestImageHash = guest
    run.results = systemSamples.sorted { $0.key < $1.key }.map { system, values in
        BenchmarkResult(
            system: system, benchmark: benchmark, status: .ok,
            metrics: [
                Metric(
                    MetricSamples(name: better == .lower ? "ns_per_op" : "throughput", unit: "x", better: better, values: values),
                    roundValues: rounds ? values : nil)
            ])
    }
    return run
}

@Suite struct CompareTests {
    let base = [100.0, 101, 99, 100.5, 99.5, 100.2, 99.8]

    @Test func aTenPercentRegressionIsFlaggedAndNamed() throws {
        let slower = base.map { $0 * 1.1 }
        let report = ComparisonReport.compare(baseline: run(["hardware-assist": base]), current: run(["hardware-assist": slower]))
        #expect(report.exitCode == 2)
        let regression = try #require(report.regressions.first)
        #expect(regression.benchmark == "cpu.pio" && regression.system == "hardware-assist")
        #expect(abs(regression.changePercent! - 10) < 0.01)
        #expect(ComparisonOutput.terminal(report).contains("REGRESSION"))
    }

    @Test func identicalDistributionsAreNotFlagged() {
        let shuffled = [99.8, 100.2, 100, 99.5, 101, 100.5, 99]
        #expect(ComparisonReport.compare(baseline: run(["native": base]), current: run(["native": shuffled])).exitCode == 0)
    }

    @Test func directionMatters() {
        // Throughput going up is an improvement, going down a regression.
        let up = ComparisonReport.compare(
            baseline: run(["native": base], better: .higher), current: run(["native": base.map { $0 * 1.2 }], better: .higher))
        #expect(up.exitCode == 4)
        let down = ComparisonReport.compare(
            baseline: run(["native": base], better: .higher), current: run(["native": base.map { $0 * 0.8 }], better: .higher))
        #expect(down.exitCode == 2)
    }

    @Test func smallSignificantChangesAreBelowThePracticalThreshold() {
        let report = ComparisonReport.compare(baseline: run(["native": base]), current: run(["native": base.map { $0 * 1.03 }]))
        #expect(report.metrics[0].pValue! < 0.01)
        #expect(report.exitCode == 0)
        let strict = ComparisonReport.compare(
            baseline: run(["native": base]), current: run(["native": base.map { $0 * 1.03 }]),
            thresholds: ThresholdPolicy(defaultPercent: 2))
        #expect(strict.exitCode == 2)
    }

    @Test func aDifferentGuestImageIsIncompatibleAndNamed() {
        let report = ComparisonReport.compare(
            baseline: run(["native": base], guest: "fnv1a64:aaaa"), current: run(["native": base], guest: "fnv1a64:bbbb"))
        #expect(report.exitCode == 5)
        #expect(report.incompatibilities.first?.contains("environment.guestImageHash") == true)
        #expect(report.incompatibilities.first?.contains("fnv1a64:aaaa") == true)
    }

    /// A TAP run against an in-VMM one (or a run from before results recorded the backend)
    /// measures another path: incompatible, named, not a 300% regression.
    @Test func aDifferentNetBackendIsIncompatibleAndNamed() {
        func netRun(_ backend: String?) -> RunResults {
            var results = run(["hardware-assist": base], benchmark: "net.rr")
            results.results[0].netBackend = backend
            return results
        }
        let report = ComparisonReport.compare(baseline: netRun(nil), current: netRun("tap"))
        #expect(report.exitCode == 5)
        #expect(report.incompatibilities == ["hardware-assist net.rr: netBackend differs: baseline vmm, current tap"])
        #expect(ComparisonReport.compare(baseline: netRun("tap"), current: netRun("tap")).exitCode == 0)
        #expect(ComparisonReport.compare(baseline: netRun(nil), current: netRun("vmm")).exitCode == 0)
    }

    @Test func aMetricMissingNowFailsTheGateAndANewOneDoesNot() {
        let report = ComparisonReport.compare(baseline: run(["native": base]), current: run(["hardware-assist": base]))
        #expect(Set(report.metrics.map(\.verdict)) == [.new, .lost])
        #expect(report.lost.first?.reason == "not in the current run")
        #expect(report.exitCode == 2)
        let onlyNew = ComparisonReport.compare(
            baseline: run(["native": base]), current: run(["native": base, "hardware-assist": base]))
        #expect(onlyNew.exitCode == 0)
    }

    /// CI found this: a baseline noisy enough to be marked "(noisy)" printed "LOST (noisy): …",
    /// which says nothing about the loss and broke the line the gate is read by.
    @Test func aLostMetricIsNotMarkedNoisy() throws {
        let noisy = run(["native": [1, 9, 2, 8, 1, 9]])
        var current = noisy
        current.results[0].status = .failed
        current.results[0].reason = "watchdog"
        current.results[0].metrics = []
        let report = ComparisonReport.compare(baseline: noisy, current: current)
        #expect(try #require(report.lost.first).noisy)
        #expect(ComparisonOutput.terminal(report).contains("LOST: failed in the current run: watchdog"))
        #expect(!ComparisonOutput.terminal(report).contains("(noisy)"))
        #expect(!ComparisonOutput.markdown(report).contains("(noisy)"))
    }

    /// Replays the finding: cpu.int ok in the baseline, failed (watchdog) now, and compare said
    /// MISSING with exit 0.
    @Test func aBenchmarkThatFailsNowIsARegressionNamedWithItsReason() throws {
        var current = run(["native": base])
        current.results[0].status = .failed
        current.results[0].reason = "watchdog stopped the guest after 60.0 s"
        current.results[0].metrics = []
        let report = ComparisonReport.compare(baseline: run(["native": base]), current: current)
        #expect(report.exitCode == 2)
        let lost = try #require(report.lost.first)
        #expect(lost.reason == "failed in the current run: watchdog stopped the guest after 60.0 s")
        #expect(ComparisonOutput.terminal(report).contains("LOST: failed in the current run: watchdog"))
        #expect(ComparisonOutput.markdown(report).contains("**LOST**"))
        let junit = ComparisonOutput.junit(report)
        #expect(junit.contains("failures=\"1\""))
        #expect(junit.contains("type=\"lost\""))
        var skipped = current
        skipped.results[0].status = .skipped
        #expect(ComparisonReport.compare(baseline: run(["native": base]), current: skipped).exitCode == 2)
    }

    @Test func tooFewRoundsToReachAlphaCannotDecideInEveryOutput() {
        let four = [10.0, 10.1, 10.2, 10.3]
        let report = ComparisonReport.compare(baseline: run(["native": four]), current: run(["native": four.map { $0 * 2 }]))
        // 4 rounds against 4: the smallest two-sided p is 2/70 = 0.029 > 0.01, so not even doubling is flagged.
        #expect(report.exitCode == 0)
        #expect(report.metrics.map(\.verdict) == [.undecided])
        let warning = report.warnings.first { $0.hasPrefix("cannot decide") }
        #expect(warning?.contains("1 with 4 and 4 round(s)") == true, "\(report.warnings)")
        #expect(warning?.contains("at least 5 rounds") == true, "\(report.warnings)")
        #expect(ComparisonOutput.terminal(report).contains("UNDECIDED: cannot decide with 4 and 4 round(s)"))
        #expect(ComparisonOutput.markdown(report).contains("1 undecided"))
        #expect(ComparisonOutput.junit(report).contains("<skipped message=\"undecided: cannot decide"))
        #expect(abs(ComparisonReport.smallestPValue(5, 5) - 2.0 / 252) < 1e-12)
        // At alpha 0.05, 4 against 4 can reach significance.
        let loose = ComparisonReport.compare(
            baseline: run(["native": four]), current: run(["native": four.map { $0 * 2 }]), alpha: 0.05)
        #expect(loose.exitCode == 2)
    }

    /// The finding: two runs of the same build compared their repetitions as if they were
    /// independent samples and flagged 17 metrics. Repetitions of one round are one replicate.
    @Test func repetitionsOfOneRoundAreNotReplicates() throws {
        let repetitions = (0..<20).map { 100 + Double($0 % 5) * 0.1 }
        let report = ComparisonReport.compare(
            baseline: run(["native": repetitions], rounds: false),
            current: run(["native": repetitions.map { $0 * 1.4 }], rounds: false))
        #expect(report.exitCode == 0)
        #expect(report.undecided.count == 1)
        #expect(try #require(report.undecided.first).changePercent.map { abs($0 - 40) < 0.1 } == true)
    }

    /// Holm over hypotheses: with 40 of them 5 rounds against 5 (p ≥ 0.0079) cannot decide, and
    /// the warning says how many rounds can.
    @Test func theRoundsNeededGrowWithTheHypotheses() {
        var systems: [String: [Double]] = [:]
        for index in 0..<40 { systems["s\(index)"] = [10, 10.1, 10.2, 10.3, 10.4] }
        let report = ComparisonReport.compare(baseline: run(systems), current: run(systems.mapValues { $0.map { $0 * 2 } }))
        #expect(report.undecided.count == 40)
        #expect(ComparisonReport.roundsNeeded(hypotheses: 40, alpha: 0.01) == 8)
        #expect(report.warnings.contains { $0.contains("at least 8 rounds") }, "\(report.warnings)")
        let eight = (0..<8).map { 10 + Double($0) / 10 }
        for index in 0..<40 { systems["s\(index)"] = eight }
        let decided = ComparisonReport.compare(baseline: run(systems), current: run(systems.mapValues { $0.map { $0 * 2 } }))
        #expect(decided.regressions.count == 40)
    }

    /// cpu.int's throughput, ns_per_op and cycles_per_op are one timed repetition transformed:
    /// one hypothesis, one verdict, named in the output.
    @Test func derivedMetricsShareTheVerdictOfTheirSamples() throws {
        func cpuInt(_ nanoseconds: [Double]) -> RunResults {
            var result = run(["native": nanoseconds], benchmark: "cpu.int")
            let perOp = result.results[0].metrics[0]
            let derived = [
                ("throughput", Better.higher, nanoseconds.map { 1e3 / $0 }),
                ("cycles_per_op", .lower, nanoseconds.map { $0 * 2.6 }),
            ]
            result.results[0].metrics =
                derived.prefix(1).map {
                    Metric(MetricSamples(name: $0.0, unit: "x", better: $0.1, values: $0.2), roundValues: $0.2)
                }
                + [perOp]
                + derived.suffix(1).map {
                    Metric(MetricSamples(name: $0.0, unit: "x", better: $0.1, values: $0.2), roundValues: $0.2)
                }
            return result
        }
        #expect(Hypotheses.families(cpuInt(base).results[0].metrics) == [[0, 1, 2]])
        let report = ComparisonReport.compare(baseline: cpuInt(base), current: cpuInt(base.map { $0 * 1.1 }))
        #expect(report.regressions.map(\.metric).sorted() == ["cycles_per_op", "ns_per_op", "throughput"])
        #expect(Set(report.metrics.compactMap(\.sharesVerdictWith)) == ["throughput"])
        #expect(Set(report.metrics.compactMap(\.pValue)).count == 1)
        #expect(ComparisonOutput.terminal(report).contains("ns_per_op (= throughput)"))
        // Two quantities measured separately stay two hypotheses.
        let boot = [
            Metric(MetricSamples(name: "boot_time", unit: "ms", better: .lower, values: [5, 6, 5.5])),
            Metric(MetricSamples(name: "to_first_instruction", unit: "ms", better: .lower, values: [2, 2.1, 2.5])),
        ]
        #expect(Hypotheses.families(boot) == [[0], [1]])
    }

    @Test func aDeliberatelySlowedRunIsNamedInTheComparison() {
        var slowed = run(["native": base])
        slowed.injectedSlowdownPercent = 10
        let report = ComparisonReport.compare(baseline: run(["native": base]), current: slowed)
        #expect(report.warnings.contains { $0.contains("--inject-slowdown 10") })
    }

    @Test func junitIsWellFormedWithOneCasePerMetric() throws {
        let report = ComparisonReport.compare(
            baseline: run(["native": base, "hardware-assist": base]),
            current: run(["native": base, "hardware-assist": base.map { $0 * 1.5 }]))
        let xml = ComparisonOutput.junit(report)
        let document = try XMLDocument(xmlString: xml)
        let cases = try document.nodes(forXPath: "//testcase")
        #expect(cases.count == 2)
        let failures = try document.nodes(forXPath: "//testcase/failure")
        #expect(failures.count == 1)
        #expect(try document.nodes(forXPath: "/testsuites/@failures").first?.stringValue == "1")
    }

    @Test func thresholdFilesOverridePerMetric() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("thresholds-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: file) }
        try "default: 5\nmetrics:\n  cpu.pio/ns_per_op: 15\n  cpu.mem-bw: 12\n  \"net.*\": 20\n".write(
            to: file, atomically: true, encoding: .utf8)
        let policy = try ThresholdPolicy.load(from: file)
        #expect(policy.percent(benchmark: "cpu.pio", metric: "ns_per_op") == 15)
        #expect(policy.percent(benchmark: "cpu.pio", metric: "cycles_per_op") == 5)
        #expect(policy.percent(benchmark: "cpu.mem-bw", metric: "bandwidth") == 12)
        #expect(policy.percent(benchmark: "net.rr", metric: "p99") == 20)
        try "default: fast\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(throws: Suite.LoadError.self) { try ThresholdPolicy.load(from: file) }
    }

    @Test func calibrationWidensThresholdsForMetricsThatDrift() {
        let runs = [run(["native": [100, 100, 100]]), run(["native": [120, 120, 120]]), run(["native": [110, 110, 110]])]
        let (policy, spreads) = ThresholdPolicy.calibrated(from: runs)
        #expect(abs(spreads[0].percent - 20 / 110 * 100) < 0.01)
        #expect(policy.percent(benchmark: "cpu.pio", metric: "ns_per_op") == 37)  // 2 x 18.2%, rounded up
        let reloaded = policy.yaml
        #expect(reloaded.contains("\"cpu.pio/ns_per_op\": 37"))
    }
}

@Suite struct ClaimTests {
    func claim(_ check: Claim.Check) -> Claim {
        Claim(
            id: "t", source: .init(title: "T", authors: nil, venue: nil, vendor: nil, year: 2000), claim: "c",
            interpretation: nil, check: check)
    }

    @Test func verdictsFollowTheConfidenceInterval() {
        let reference = Claim.Reference(system: "hardware-assist", benchmark: "cpu.pio", metric: "ns_per_op")
        let tight = run(["hardware-assist": [100, 101, 99, 100, 100]])
        #expect(claim(.init(value: reference, atMost: 150)).evaluate(tight).outcome == .reproduced)
        #expect(claim(.init(value: reference, atMost: 50)).evaluate(tight).outcome == .notReproduced)
        let wide = run(["hardware-assist": [60, 140, 80, 120, 100]])
        #expect(claim(.init(value: reference, atMost: 100)).evaluate(wide).outcome == .inconclusive)
        let missing = claim(
            .init(value: Claim.Reference(system: "paravirt-io", benchmark: "cpu.pio", metric: "ns_per_op"), atLeast: 1))
        let verdict = missing.evaluate(tight)
        #expect(verdict.outcome == .insufficientData)
        #expect(verdict.evidence.contains("paravirt-io"))
    }

    @Test func aClaimOverAMetricWithNoSamplesIsInsufficientDataNotATrap() {
        let reference = Claim.Reference(system: "hardware-assist", benchmark: "cpu.pio", metric: "ns_per_op")
        var empty = run(["hardware-assist": [100, 101], "native": [50, 51]])
        empty.results[0].metrics[0].samples = []
        let value = claim(.init(value: reference, atMost: 150)).evaluate(empty)
        #expect(value.outcome == .insufficientData)
        #expect(value.evidence.contains("no samples"))
        let ratio = Claim.Ratio(
            numerator: reference, denominator: .init(system: "native", benchmark: "cpu.pio", metric: "ns_per_op"))
        #expect(claim(.init(ratio: ratio, atLeast: 1)).evaluate(empty).outcome == .insufficientData)
    }

    @Test func aMalformedClaimFileNamesTheFileAndLine() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-claims-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let broken = directory.appendingPathComponent("broken.yaml")
        try "id: x\nsource:\n  title: T\n  year: 2000\nclaim: c\ncheck:\n  value: [unclosed\n".write(
            to: broken, atomically: true, encoding: .utf8)
        do {
            _ = try Claim.load(from: broken)
            Issue.record("a malformed claim loaded")
        } catch {
            #expect("\(error)".contains("broken.yaml:"), "\(error)")
        }
        let incomplete = directory.appendingPathComponent("incomplete.yaml")
        try "id: x\nsource:\n  title: T\nclaim: c\ncheck:\n  atLeast: 1\n".write(
            to: incomplete, atomically: true, encoding: .utf8)
        do {
            _ = try Claim.load(from: incomplete)
            Issue.record("a claim without source.year loaded")
        } catch {
            #expect("\(error)".contains("incomplete.yaml:3:"), "\(error)")  // where the source mapping starts
            #expect("\(error)".contains("missing key 'year'"), "\(error)")
        }
    }

    @Test func ratioClaims() {
        let ratio = Claim.Ratio(
            numerator: .init(system: "hardware-assist", benchmark: "cpu.pio", metric: "throughput"),
            denominator: .init(system: "native", benchmark: "cpu.pio", metric: "throughput"))
        let results = run(
            ["hardware-assist": [97, 98, 97.5, 97.2, 97.8], "native": [100, 100.5, 99.5, 100, 100.2]], better: .higher)
        let verdict = claim(.init(ratio: ratio, atLeast: 0.95)).evaluate(results)
        #expect(verdict.outcome == .reproduced, "\(verdict.evidence)")
        #expect(verdict.evidence.contains("0.97"))
    }

    @Test func countersCanBeCheckedAndAContextRatioIsShownButNotJudged() {
        var results = run(
            ["hardware-assist": [10, 10.5, 9.5, 10, 10.2], "paravirt-io": [31, 30, 32, 30.5, 31.5]], better: .higher,
            rounds: false)
        var emulated = ExitCounters()
        emulated.mmio = 300
        emulated.operations = 100
        var paravirtual = ExitCounters()
        paravirtual.mmio = 120
        paravirtual.operations = 100
        results.results[0].exits = emulated
        results.results[1].exits = paravirtual
        let exits = Claim.Ratio(
            numerator: .init(system: "hardware-assist", benchmark: "cpu.pio", metric: "exits_per_op"),
            denominator: .init(system: "paravirt-io", benchmark: "cpu.pio", metric: "exits_per_op"))
        let counted = claim(.init(ratio: exits, atLeast: 2)).evaluate(results)
        #expect(counted.outcome == .reproduced, "\(counted.evidence)")
        #expect(counted.value == 2.5)
        #expect(claim(.init(ratio: exits, atLeast: 3)).evaluate(results).outcome == .notReproduced, "exact counts: no interval")
        var withContext = claim(.init(ratio: exits, atLeast: 2))
        withContext.context = Claim.Ratio(
            numerator: .init(system: "paravirt-io", benchmark: "cpu.pio", metric: "throughput"),
            denominator: .init(system: "hardware-assist", benchmark: "cpu.pio", metric: "throughput"))
        let verdict = withContext.evaluate(results)
        #expect(verdict.outcome == .reproduced)
        #expect(
            verdict.evidence.contains("context, not judged: paravirt-io cpu.pio throughput / hardware-assist = 3.1"),
            "\(verdict.evidence)")
    }

    @Test func shippedClaimsLoad() throws {
        let claims = try Claim.loadAll(in: try Workspace.locate())
        #expect(claims.count >= 5)
        #expect(Set(claims.map(\.id)).count == claims.count)
    }
}
