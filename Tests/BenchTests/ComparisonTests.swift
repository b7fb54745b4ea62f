import Foundation
#if canImport(FoundationXML)
    import FoundationXML
#endif
import Testing

@testable import Bench
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

func run(_ systemSamples: [String: [Double]], better: Better = .lower, guest: String = "fnv1a64:1", benchmark: String = "cpu.pio")
    -> RunResults
{
    var run = sampleRun()
    run.environment.guestImageHash = guest
    run.results = systemSamples.sorted { $0.key < $1.key }.map { system, values in
        BenchmarkResult(
            system: system, benchmark: benchmark, status: .ok,
            metrics: [
                Metric(
                    MetricSamples(name: better == .lower ? "ns_per_op" : "throughput", unit: "x", better: better, values: values))
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

    @Test func newAndMissingMetricsAreListedNotFailed() {
        let report = ComparisonReport.compare(baseline: run(["native": base]), current: run(["hardware-assist": base]))
        #expect(Set(report.metrics.map(\.verdict)) == [.new, .missing])
        #expect(report.exitCode == 0)
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

    @Test func shippedClaimsLoad() throws {
        let claims = try Claim.loadAll(in: try Workspace.locate())
        #expect(claims.count >= 5)
        #expect(Set(claims.map(\.id)).count == claims.count)
    }
}
