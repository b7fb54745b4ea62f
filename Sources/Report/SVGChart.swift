import Foundation
import Results

/// The colour of each system in every chart and legend.
enum Palette {
    static let fallback = ["#ff9da6", "#bab0ac", "#79706e", "#d67195", "#a0cbe8", "#8cd17d"]

    static func colour(_ system: String, index: Int) -> String {
        let mode = system.split(separator: "/").last.map(String.init) ?? system
        if system.contains("/"), index > 0 {
            // Merged hosts: same mode, shifted shade per host so bars stay distinguishable.
            return fallback[index % fallback.count]
        }
        return SystemRegistry.colour(mode) ?? fallback[index % fallback.count]
    }
}

/// A value axis: linear from zero, or logarithmic by decades when the data span two or more.
struct ValueAxis {
    let logarithmic: Bool
    let low: Double
    let high: Double

    init(values: [Double], forceLog: Bool? = nil) {
        let positive = values.filter { $0 > 0 && $0.isFinite }
        let maximum = positive.max() ?? 1
        let minimum = positive.min() ?? 1
        logarithmic = forceLog ?? (maximum / minimum >= 100)
        if logarithmic {
            low = pow(10, floor(log10(minimum)))
            high = pow(10, ceil(log10(maximum * 1.0001)))
        } else {
            low = 0
            high = ValueAxis.niceCeiling(maximum * 1.08)
        }
    }

    /// The next 1, 2 or 5 times a power of ten.
    static func niceCeiling(_ value: Double) -> Double {
        guard value > 0 else { return 1 }
        let magnitude = pow(10, floor(log10(value)))
        for step in [1.0, 2, 5, 10] where step * magnitude >= value { return step * magnitude }
        return 10 * magnitude
    }

    /// Position in 0...1 along the axis.
    func fraction(_ value: Double) -> Double {
        if logarithmic {
            guard value > 0 else { return 0 }
            return max(0, min(1, (log10(value) - log10(low)) / (log10(high) - log10(low))))
        }
        return max(0, min(1, (value - low) / (high - low)))
    }

    var ticks: [Double] {
        if logarithmic {
            var ticks: [Double] = []
            var tick = low
            while tick <= high * 1.0001 {
                ticks.append(tick)
                tick *= 10
            }
            return ticks
        }
        return (0...4).map { low + (high - low) * Double($0) / 4 }
    }
}

func formatNumber(_ value: Double) -> String {
    let magnitude = abs(value)
    if magnitude == 0 { return "0" }
    if magnitude >= 1e6 { return String(format: "%.3gM", value / 1e6) }
    if magnitude >= 1e4 { return String(format: "%.3gk", value / 1e3) }
    if magnitude >= 100 { return String(format: "%.0f", value) }
    if magnitude >= 10 { return String(format: "%.1f", value) }
    if magnitude >= 1 { return String(format: "%.2f", value) }
    return String(format: "%.3g", value)
}

/// Vertical grouped bars with 95% CI whiskers: one group per category (benchmark), one bar per
/// series (system).
struct BarChart {
    struct Bar {
        let series: String
        let value: Double
        let low: Double
        let high: Double
        let note: String?
    }

    struct Group {
        let category: String
        let bars: [Bar]
    }

    let title: String
    let unit: String
    let groups: [Group]
    let series: [String]
    var width = 760
    var height = 300
    var referenceLine: Double? = nil

    func svg() -> String {
        let values = groups.flatMap { $0.bars.flatMap { [$0.value, $0.low, $0.high] } } + (referenceLine.map { [$0] } ?? [])
        let axis = ValueAxis(values: values)
        let left = 70.0
        let right = 20.0
        let top = 34.0
        let bottom = 54.0
        let plotWidth = Double(width) - left - right
        let plotHeight = Double(height) - top - bottom
        func y(_ value: Double) -> Double { top + plotHeight * (1 - axis.fraction(value)) }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" class="chart" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" role="img" aria-label="\(escapeXML(title))">
            <text x="\(Int(left))" y="20" class="chart-title">\(escapeXML(title))\(axis.logarithmic ? " (log scale)" : "")</text>
            <text x="14" y="\(Int(top + plotHeight / 2))" class="axis-label" transform="rotate(-90 14 \(Int(top + plotHeight / 2)))" text-anchor="middle">\(escapeXML(unit))</text>

            """
        for tick in axis.ticks {
            let ty = y(tick)
            svg += "<line x1=\"\(left)\" x2=\"\(left + plotWidth)\" y1=\"\(ty)\" y2=\"\(ty)\" class=\"grid\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(ty + 4)\" class=\"tick\" text-anchor=\"end\">\(formatNumber(tick))</text>\n"
        }
        let groupWidth = plotWidth / Double(max(groups.count, 1))
        let barWidth = min(42, groupWidth * 0.8 / Double(max(series.count, 1)))
        for (groupIndex, group) in groups.enumerated() {
            let groupStart = left + groupWidth * Double(groupIndex) + (groupWidth - barWidth * Double(series.count)) / 2
            for (seriesIndex, name) in series.enumerated() {
                let x = groupStart + barWidth * Double(seriesIndex)
                guard let bar = group.bars.first(where: { $0.series == name }) else { continue }
                let barTop = y(bar.value)
                let base = axis.logarithmic ? top + plotHeight : y(0)
                let colour = Palette.colour(name, index: seriesIndex)
                let tooltip =
                    "\(name) \(group.category): \(formatNumber(bar.value)) \(unit) [\(formatNumber(bar.low)), \(formatNumber(bar.high))]\(bar.note.map { " \($0)" } ?? "")"
                svg +=
                    "<rect class=\"bar\" data-value=\"\(bar.value)\" x=\"\(x + 1)\" y=\"\(barTop)\" width=\"\(barWidth - 2)\" height=\"\(max(0, base - barTop))\" fill=\"\(colour)\"><title>\(escapeXML(tooltip))</title></rect>"
                let centre = x + barWidth / 2
                let (whiskerTop, whiskerBottom) = (y(bar.high), y(bar.low))
                svg += "<line class=\"ci\" x1=\"\(centre)\" x2=\"\(centre)\" y1=\"\(whiskerTop)\" y2=\"\(whiskerBottom)\"/>"
                svg += "<line class=\"ci\" x1=\"\(centre - 4)\" x2=\"\(centre + 4)\" y1=\"\(whiskerTop)\" y2=\"\(whiskerTop)\"/>"
                svg +=
                    "<line class=\"ci\" x1=\"\(centre - 4)\" x2=\"\(centre + 4)\" y1=\"\(whiskerBottom)\" y2=\"\(whiskerBottom)\"/>"
                if let note = bar.note {
                    svg +=
                        "<text x=\"\(centre)\" y=\"\(whiskerTop - 4)\" class=\"note\" text-anchor=\"middle\">\(escapeXML(note))</text>"
                }
                svg += "\n"
            }
            svg +=
                "<text x=\"\(left + groupWidth * (Double(groupIndex) + 0.5))\" y=\"\(top + plotHeight + 16)\" class=\"category\" text-anchor=\"middle\">\(escapeXML(group.category))</text>\n"
        }
        if let reference = referenceLine {
            let ry = y(reference)
            svg += "<line x1=\"\(left)\" x2=\"\(left + plotWidth)\" y1=\"\(ry)\" y2=\"\(ry)\" class=\"reference\"/>"
            svg +=
                "<text x=\"\(left + plotWidth)\" y=\"\(ry - 4)\" class=\"note\" text-anchor=\"end\">\(formatNumber(reference))</text>\n"
        }
        svg += "<line x1=\"\(left)\" x2=\"\(left)\" y1=\"\(top)\" y2=\"\(top + plotHeight)\" class=\"axis\"/>"
        svg +=
            "<line x1=\"\(left)\" x2=\"\(left + plotWidth)\" y1=\"\(top + plotHeight)\" y2=\"\(top + plotHeight)\" class=\"axis\"/>\n"
        svg += legend(y: Double(height) - 14, left: left)
        return svg + "</svg>"
    }

    func legend(y: Double, left: Double) -> String {
        var x = left
        var svg = ""
        for (index, name) in series.enumerated() {
            svg += "<rect x=\"\(x)\" y=\"\(y - 9)\" width=\"10\" height=\"10\" fill=\"\(Palette.colour(name, index: index))\"/>"
            svg += "<text x=\"\(x + 14)\" y=\"\(y)\" class=\"legend\">\(escapeXML(name))</text>"
            x += 22 + Double(name.count) * 7
        }
        return svg + "\n"
    }
}

/// Operation-latency percentiles (p50, p90, p99, p99.9) as lines on a log axis, one per system.
struct PercentilePlot {
    struct Series {
        let system: String
        let values: [Double]  // p50, p90, p99, p99.9 in ns
    }

    static let labels = ["p50", "p90", "p99", "p99.9"]
    let title: String
    let series: [Series]
    var width = 370
    var height = 240

    func svg() -> String {
        let axis = ValueAxis(values: series.flatMap(\.values), forceLog: true)
        let left = 62.0
        let top = 30.0
        let plotWidth = Double(width) - left - 16
        let plotHeight = Double(height) - top - 50
        func x(_ index: Int) -> Double { left + plotWidth * (Double(index) + 0.5) / Double(Self.labels.count) }
        func y(_ value: Double) -> Double { top + plotHeight * (1 - axis.fraction(value)) }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" class="chart" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" role="img" aria-label="\(escapeXML(title))">
            <text x="\(Int(left))" y="18" class="chart-title">\(escapeXML(title))</text>

            """
        for tick in axis.ticks {
            svg += "<line x1=\"\(left)\" x2=\"\(left + plotWidth)\" y1=\"\(y(tick))\" y2=\"\(y(tick))\" class=\"grid\"/>"
            svg +=
                "<text x=\"\(left - 6)\" y=\"\(y(tick) + 4)\" class=\"tick\" text-anchor=\"end\">\(formatNumber(tick)) ns</text>\n"
        }
        for (index, label) in Self.labels.enumerated() {
            svg +=
                "<text x=\"\(x(index))\" y=\"\(top + plotHeight + 16)\" class=\"category\" text-anchor=\"middle\">\(label)</text>"
        }
        for (index, line) in series.enumerated() {
            let colour = Palette.colour(line.system, index: index)
            let points = line.values.enumerated().map { "\(x($0.offset)),\(y($0.element))" }.joined(separator: " ")
            svg +=
                "<polyline class=\"percentile-line\" points=\"\(points)\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"/>"
            for (pointIndex, value) in line.values.enumerated() {
                svg +=
                    "<circle class=\"percentile-point\" cx=\"\(x(pointIndex))\" cy=\"\(y(value))\" r=\"3.5\" fill=\"\(colour)\"><title>\(escapeXML("\(line.system) \(Self.labels[pointIndex]): \(formatNumber(value)) ns"))</title></circle>"
            }
            svg += "\n"
        }
        svg += BarChart(title: "", unit: "", groups: [], series: series.map(\.system)).legend(y: Double(height) - 10, left: left)
        return svg + "</svg>"
    }
}
