import Results
import Foundation

/// history.html: each metric over a series of runs, with the regressions `compare` would flag
/// between consecutive runs marked in red.
public enum HistoryReport {
    public struct Point {
        public let label: String
        public let median: Double
        public let low: Double
        public let high: Double
        public let regression: Bool
    }

    /// Finds every results.json under `folder`, oldest first; unreadable ones are reported.
    public static func loadRuns(under folder: URL) -> (runs: [(URL, RunResults)], problems: [String]) {
        var runs: [(URL, RunResults)] = []
        var problems: [String] = []
        let enumerator = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil)
        while let url = enumerator?.nextObject() as? URL {
            guard url.lastPathComponent == "results.json" else { continue }
            do { runs.append((url, try RunResults.load(from: url))) } catch { problems.append("\(error)") }
        }
        runs.sort { ($0.1.startedAt, $0.0.path) < ($1.1.startedAt, $1.0.path) }
        return (runs, problems)
    }

    public static func render(_ runs: [RunResults], alpha: Double = 0.01, thresholds: ThresholdPolicy = ThresholdPolicy())
        -> String
    {
        var series: [String: [Point]] = [:]
        var order: [String] = []
        var units: [String: String] = [:]
        for (index, run) in runs.enumerated() {
            let label = String(run.startedAt.prefix(16)) + (run.tool.gitCommit.map { " " + String($0.prefix(7)) } ?? "")
            let flagged =
                index > 0
                ? Set(
                    ComparisonReport.compare(baseline: runs[index - 1], current: run, alpha: alpha, thresholds: thresholds)
                        .regressions.map {
                            "\($0.system) \($0.benchmark) \($0.metric)"
                        }) : []
            for result in run.results where result.status == .ok {
                guard let metric = result.metrics.first else { continue }
                let key = "\(result.system) \(result.benchmark) \(metric.name)"
                if series[key] == nil { order.append(key) }
                units[key] = metric.unit
                let s = metric.summary
                series[key, default: []].append(
                    Point(label: label, median: s.median, low: s.ci95Low, high: s.ci95High, regression: flagged.contains(key)))
            }
        }
        var body =
            "<header><h1>hvbench history</h1><p>\(runs.count) runs from \(escapeXML(runs.first?.startedAt ?? "-")) to \(escapeXML(runs.last?.startedAt ?? "-")). Red points: regressions that <code>hvbench compare</code> flags against the previous run (alpha \(alpha)).</p></header>"
        body += "<div class=\"grid\">"
        for key in order { body += lineChart(title: key, unit: units[key] ?? "", points: series[key] ?? []) }
        body += "</div>"
        return HTMLReport.page(title: "hvbench history", body: body)
    }

    static func lineChart(title: String, unit: String, points: [Point]) -> String {
        let width = 560.0
        let height = 240.0
        let left = 64.0
        let top = 30.0
        let plotWidth = width - left - 16
        let plotHeight = height - top - 60
        let axis = ValueAxis(values: points.flatMap { [$0.low, $0.high] })
        func x(_ i: Int) -> Double { left + plotWidth * (points.count > 1 ? Double(i) / Double(points.count - 1) : 0.5) }
        func y(_ v: Double) -> Double { top + plotHeight * (1 - axis.fraction(v)) }
        var svg =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"\(Int(width))\" height=\"\(Int(height))\"><text x=\"\(left)\" y=\"18\" class=\"chart-title\">\(escapeXML(title))</text>"
        for tick in axis.ticks {
            svg +=
                "<line x1=\"\(left)\" x2=\"\(left + plotWidth)\" y1=\"\(y(tick))\" y2=\"\(y(tick))\" class=\"grid\"/><text x=\"\(left - 6)\" y=\"\(y(tick) + 4)\" class=\"tick\" text-anchor=\"end\">\(formatNumber(tick)) \(escapeXML(unit))</text>"
        }
        let line = points.enumerated().map { "\(x($0.offset)),\(y($0.element.median))" }.joined(separator: " ")
        svg += "<polyline points=\"\(line)\" fill=\"none\" stroke=\"#4c78a8\" stroke-width=\"2\"/>"
        for (i, p) in points.enumerated() {
            svg += "<line class=\"ci\" x1=\"\(x(i))\" x2=\"\(x(i))\" y1=\"\(y(p.high))\" y2=\"\(y(p.low))\"/>"
            svg +=
                "<circle class=\"\(p.regression ? "regression" : "point")\" cx=\"\(x(i))\" cy=\"\(y(p.median))\" r=\"\(p.regression ? 6 : 3.5)\" fill=\"\(p.regression ? "#d62728" : "#4c78a8")\"><title>\(escapeXML("\(p.label): \(formatNumber(p.median)) \(unit) [\(formatNumber(p.low)), \(formatNumber(p.high))]\(p.regression ? " REGRESSION" : "")"))</title></circle>"
            if points.count <= 12 || i % max(1, points.count / 8) == 0 {
                svg +=
                    "<text x=\"\(x(i))\" y=\"\(top + plotHeight + 14)\" class=\"category\" text-anchor=\"end\" transform=\"rotate(-30 \(x(i)) \(top + plotHeight + 14))\">\(escapeXML(p.label))</text>"
            }
        }
        return svg + "</svg>"
    }
}
