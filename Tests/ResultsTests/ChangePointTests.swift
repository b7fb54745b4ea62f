import Foundation
import Testing

@testable import Report
@testable import Results

@Suite struct ChangePointTests {
    /// Noise of a given relative size around `level`, reproducible.
    func noisy(_ count: Int, level: Double, spread: Double, seed: UInt64) -> [Double] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in level * (1 + spread * (Double(generator.next() % 2001) / 1000 - 1)) }
    }

    @Test func aLastingStepIsFoundWhereItStartsWithItsSize() throws {
        let series = noisy(20, level: 100, spread: 0.03, seed: 1) + noisy(10, level: 115, spread: 0.03, seed: 2)
        let points = ChangePoints.detect(series)
        let step = try #require(points.first)
        #expect(points.count == 1, "\(points)")
        #expect(step.index == 20)
        #expect(abs(step.changePercent - 15) < 4, "\(step.changePercent)")
        #expect(step.pValue < 0.05)
    }

    @Test func driftWithoutAStepRaisesNothing() {
        // ±10% noise, the kind of run-to-run drift these hosts show, and no step.
        for seed in UInt64(1)...10 {
            #expect(ChangePoints.detect(noisy(30, level: 100, spread: 0.10, seed: seed)).isEmpty, "seed \(seed)")
        }
    }

    @Test func twoStepsAreBothFound() {
        let series =
            noisy(12, level: 100, spread: 0.02, seed: 3) + noisy(12, level: 130, spread: 0.02, seed: 4)
            + noisy(12, level: 90, spread: 0.02, seed: 5)
        #expect(ChangePoints.detect(series).map(\.index) == [12, 24])
    }

    @Test func shortOrBrokenSeriesHaveNoChangePoints() {
        #expect(ChangePoints.detect([]).isEmpty)
        #expect(ChangePoints.detect([1, 2, 3, 4, 5]).isEmpty)
        #expect(ChangePoints.detect([1, 1, 1, .nan, 9, 9, 9, 9]).isEmpty)
        #expect(ChangePoints.detect([Double](repeating: 5, count: 20)).isEmpty)
    }

    @Test func aSingleOutlierIsNotARegime() {
        var series = noisy(25, level: 100, spread: 0.02, seed: 6)
        series[12] = 200
        #expect(ChangePoints.detect(series).isEmpty)
    }
}

@Suite struct HistoryTests {
    /// One run per level: `levels[i]` is the median of run i (three tight samples around it).
    func runs(_ levels: [Double]) -> [RunResults] {
        levels.enumerated().map { index, level in
            var result = run(["native": [level * 0.999, level, level * 1.001]])
            result.startedAt = String(format: "2026-11-%02dT10:00:00Z", index + 1)
            return result
        }
    }

    func levels(_ count: Int, _ level: Double, seed: UInt64) -> [Double] {
        var generator = SplitMix64(seed: seed)
        return (0..<count).map { _ in level * (1 + 0.05 * (Double(generator.next() % 2001) / 1000 - 1)) }
    }

    @Test func aStepForTheWorseAtTheNewestRunsFailsTheCheck() throws {
        // ns_per_op (lower is better) 20% slower over the last four runs.
        let history = History(runs(levels(16, 100, seed: 1) + levels(4, 120, seed: 2)))
        let alarms = history.alarms(window: 5, thresholds: ThresholdPolicy())
        let alarm = try #require(alarms.first)
        #expect(alarms.count == 1)
        #expect(alarm.series.key == "native cpu.pio ns_per_op")
        #expect(alarm.runLabel.hasPrefix("2026-11-17T10:00"))
        #expect(alarm.change.changePercent > 10)
    }

    /// A fleet: the same step on two hosts is named once with both; a third host's own step is not shared.
    @Test func theSameRegressionOnSeveralHostsIsNamedWithThem() {
        let stepped = History(runs(levels(16, 100, seed: 1) + levels(4, 120, seed: 2))).alarms(
            window: 5, thresholds: ThresholdPolicy())
        let flat = History(runs(levels(20, 100, seed: 5))).alarms(window: 5, thresholds: ThresholdPolicy())
        #expect(flat.isEmpty)
        let shared = History.sharedAlarms([("b", stepped), ("a", stepped), ("c", flat)])
        #expect(shared.map(\.series) == ["native cpu.pio ns_per_op"])
        #expect(shared.first?.hosts == ["a", "b"])
        #expect(History.sharedAlarms([("a", stepped), ("c", flat)]).isEmpty)
    }

    @Test func anImprovementAnOldStepOrDriftDoesNot() {
        let better = History(runs(levels(16, 100, seed: 3) + levels(4, 80, seed: 4)))
        #expect(better.series[0].changePoints.count == 1)
        #expect(better.alarms(window: 5, thresholds: ThresholdPolicy()).isEmpty, "an improvement")
        let old = History(runs(levels(6, 100, seed: 5) + levels(14, 120, seed: 6)))
        #expect(old.alarms(window: 5, thresholds: ThresholdPolicy()).isEmpty, "the step is older than the window")
        let drift = History(runs(levels(20, 100, seed: 7)))
        #expect(drift.series[0].changePoints.isEmpty, "±5% drift")
        let small = History(runs(levels(16, 100, seed: 8) + levels(4, 120, seed: 9)))
        #expect(small.alarms(window: 5, thresholds: ThresholdPolicy(defaultPercent: 30)).isEmpty, "below the threshold")
    }

    @Test func theChartMarksTheChangeAndKeepsEveryLabelInside() throws {
        let history = History(runs(levels(16, 100, seed: 1) + levels(4, 120, seed: 2)))
        let html = HistoryReport.render(runs(levels(16, 100, seed: 1) + levels(4, 120, seed: 2)), history: history)
        #expect(html.contains("class=\"change\""))
        #expect(html.contains("from 2026-11-17T10:00"))
        #expect(!html.contains("class=\"regression\""), "previous-run red points flagged ordinary drift")
        // Every label fits its chart: right-aligned tick labels end at x, so they need x ≥ their
        // width (the old fixed 64 px margin cut long ones); run labels start at x and slant 30°
        // down-right, so they need x + 0.87 × width ≤ the chart's width.
        let chartWidth = try #require(
            html.components(separatedBy: "class=\"chart\" width=\"").dropFirst().first.flatMap {
                Double($0.prefix { $0 != "\"" })
            })
        func labels(_ marker: String) -> [(x: Double, text: String)] {
            html.components(separatedBy: "<text x=\"").dropFirst().compactMap { piece in
                guard piece.contains(marker), let x = Double(piece.prefix { $0 != "\"" }),
                    let open = piece.firstIndex(of: ">"), let close = piece.range(of: "</text>")
                else { return nil }
                return (x, String(piece[piece.index(after: open)..<close.lowerBound]))
            }
        }
        let ticks = labels("class=\"tick\" text-anchor=\"end\"")
        let runs = labels("class=\"category\" text-anchor=\"start\"")
        #expect(!ticks.isEmpty && !runs.isEmpty)
        for tick in ticks { #expect(tick.x - HistoryReport.textWidth(tick.text) >= 0, "tick \(tick.text) cut at the left") }
        for run in runs {
            #expect(run.x + 0.87 * HistoryReport.textWidth(run.text) <= chartWidth, "run label \(run.text) cut at the right")
        }
    }
}
