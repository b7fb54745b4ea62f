import Results
import Foundation

/// history.html: each metric over a series of runs, with its change points (E-divisive means,
/// see `ChangePoints`) marked where the new regime starts, with the size of the step.
public enum HistoryReport {
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

    public static func render(_ runs: [RunResults], history: History? = nil) -> String {
        let history = history ?? History(runs)
        let changes = history.series.reduce(0) { $0 + $1.changePoints.count }
        var body =
            "<header><h1>hvbench history</h1><p>\(runs.count) runs from \(escapeXML(runs.first?.startedAt ?? "-")) to \(escapeXML(runs.last?.startedAt ?? "-")). "
            + "Marked: \(changes) change points (E-divisive means with a permutation test, p &lt; 0.05), each where the new level starts, "
            + "red when the metric got worse. Run-to-run drift without a lasting step is not marked.</p></header>"
        body += "<div class=\"grid\">"
        // One chart per (system, benchmark): its primary (first) metric, as in the run report.
        var charted = Set<String>()
        for series in history.series where charted.insert("\(series.system) \(series.benchmark)").inserted {
            body += lineChart(series, labels: history.runLabels)
        }
        body += "</div>"
        return HTMLReport.page(title: "hvbench history", body: body)
    }

    /// Approximate width of chart text (11 px sans-serif), for margins that fit the labels.
    static func textWidth(_ text: String) -> Double { Double(text.count) * 6.2 }

    /// - Parameter links: per run (index into `labels`), where its point leads (the dashboard's run pages).
    static func lineChart(_ series: History.Series, labels: [String], links: [String]? = nil) -> String {
        let points = series.medians.indices
        let pointLabels = series.runIndices.map { labels[$0] }
        let axis = ValueAxis(values: series.lows + series.highs)
        let tickLabels = axis.ticks.map { "\(formatNumber($0)) \(series.unit)" }
        // Margins from the labels themselves: ticks on the left, run labels slanted down-right.
        let left = 12 + (tickLabels.map(textWidth).max() ?? 40)
        let longestRunLabel = pointLabels.map(textWidth).max() ?? 0
        let right = 16 + longestRunLabel * 0.87
        let plotWidth = 480.0
        let top = 30.0
        let plotHeight = 170.0
        let width = left + plotWidth + right
        let height = top + plotHeight + 24 + longestRunLabel * 0.5
        let changeAt = Dictionary(uniqueKeysWithValues: series.changePoints.map { ($0.index, $0) })
        func x(_ i: Int) -> Double { left + plotWidth * (points.count > 1 ? Double(i) / Double(points.count - 1) : 0.5) }
        func y(_ v: Double) -> Double { top + plotHeight * (1 - axis.fraction(v)) }
        var svg =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"\(Int(width))\" height=\"\(Int(height))\"><text x=\"\(left)\" y=\"18\" class=\"chart-title\">\(escapeXML(series.key))</text>"
        for (tick, label) in zip(axis.ticks, tickLabels) {
            svg +=
                "<line x1=\"\(left)\" x2=\"\(left + plotWidth)\" y1=\"\(y(tick))\" y2=\"\(y(tick))\" class=\"grid\"/><text x=\"\(left - 6)\" y=\"\(y(tick) + 4)\" class=\"tick\" text-anchor=\"end\">\(escapeXML(label))</text>"
        }
        for (index, change) in changeAt.sorted(by: { $0.key < $1.key }) {
            let colour = series.isWorse(change) ? "#d62728" : "#2ca02c"
            let marker = x(index) - (points.count > 1 ? plotWidth / Double(points.count - 1) / 2 : 0)
            svg +=
                "<line class=\"change\" x1=\"\(marker)\" x2=\"\(marker)\" y1=\"\(top)\" y2=\"\(top + plotHeight)\" style=\"stroke:\(colour);stroke-width:1.5\" stroke-dasharray=\"4 3\"/>"
                + "<text x=\"\(marker + 4)\" y=\"\(top + 12)\" class=\"tick\" style=\"fill:\(colour)\">\(String(format: "%+.1f%%", change.changePercent)) from \(escapeXML(pointLabels[index]))</text>"
        }
        let line = points.map { "\(x($0)),\(y(series.medians[$0]))" }.joined(separator: " ")
        svg += "<polyline points=\"\(line)\" fill=\"none\" stroke=\"#4c78a8\" stroke-width=\"2\"/>"
        for i in points {
            svg += "<line class=\"ci\" x1=\"\(x(i))\" x2=\"\(x(i))\" y1=\"\(y(series.highs[i]))\" y2=\"\(y(series.lows[i]))\"/>"
            let change = changeAt[i]
            let title =
                "\(pointLabels[i]): \(formatNumber(series.medians[i])) \(series.unit) [\(formatNumber(series.lows[i])), \(formatNumber(series.highs[i]))]"
                + (change.map { String(format: "; change point %+.1f%% (p %.3f)", $0.changePercent, $0.pValue) } ?? "")
            let circle =
                "<circle class=\"\(change == nil ? "point" : "change-point")\" cx=\"\(x(i))\" cy=\"\(y(series.medians[i]))\" r=\"\(change == nil ? 3.5 : 6)\" fill=\"\(change.map { series.isWorse($0) ? "#d62728" : "#2ca02c" } ?? "#4c78a8")\"><title>\(escapeXML(title))</title></circle>"
            if let links, links.indices.contains(series.runIndices[i]) {
                svg += "<a class=\"run-link\" href=\"\(escapeXML(links[series.runIndices[i]]))\">\(circle)</a>"
            } else {
                svg += circle
            }
            if points.count <= 12 || i % max(1, points.count / 8) == 0 {
                let baseline = top + plotHeight + 14
                svg +=
                    "<text x=\"\(x(i))\" y=\"\(baseline)\" class=\"category\" text-anchor=\"start\" transform=\"rotate(30 \(x(i)) \(baseline))\">\(escapeXML(pointLabels[i]))</text>"
            }
        }
        return svg + "</svg>"
    }
}
