import Results
import Foundation

/// Terminal, Markdown and JUnit renderings of a comparison.
public enum ComparisonOutput {
    static func number(_ value: Double?) -> String { value.map(formatNumber) ?? "-" }
    static func percent(_ value: Double?) -> String { value.map { String(format: "%+.1f%%", $0) } ?? "-" }
    /// The change, with its CI when there is one (`ab`).
    static func change(_ m: MetricComparison) -> String {
        guard let interval = m.changeInterval, interval.count == 2 else { return percent(m.changePercent) }
        return percent(m.changePercent) + String(format: " [%+.1f, %+.1f]", interval[0], interval[1])
    }
    static func p(_ value: Double?) -> String { value.map { String(format: "%.4f", $0) } ?? "-" }

    static func interesting(_ report: ComparisonReport) -> [MetricComparison] {
        report.metrics.sorted { a, b in
            let rank: [MetricComparison.Verdict: Int] = [
                .lost: 0, .regression: 1, .improvement: 2, .undecided: 3, .new: 4, .unchanged: 5,
            ]
            return (rank[a.verdict]!, a.system, a.benchmark, a.metric) < (rank[b.verdict]!, b.system, b.benchmark, b.metric)
        }
    }

    /// A noisy baseline explains a doubtful verdict; it says nothing about a metric that is lost.
    static func noisyMark(_ m: MetricComparison) -> String { m.noisy && m.verdict != .lost ? " (noisy)" : "" }

    static var verdictHelp: String {
        "regression/improvement = p < alpha (compare: Mann-Whitney over rounds; ab: sign test on round-paired ratios; Holm-adjusted over hypotheses) "
            + "AND the change exceeds the metric's threshold in that direction; "
            + "lost = ok in the baseline, failed, skipped or absent now (fails the gate); undecided = too few rounds for "
            + "the test ever to reach alpha; one hypothesis per measured quantity: a metric that transforms another's "
            + "samples (\"= throughput\") shares its verdict"
    }

    /// "(= throughput)": the metric shares the verdict of the one whose samples it transforms.
    static func shared(_ m: MetricComparison) -> String { m.sharesVerdictWith.map { " (= \($0))" } ?? "" }

    static func counts(_ report: ComparisonReport) -> String {
        "\(report.regressions.count) regressions, \(report.lost.count) lost, \(report.improvements.count) improvements"
            + (report.undecided.isEmpty ? "" : ", \(report.undecided.count) undecided")
    }

    public static func terminal(_ report: ComparisonReport) -> String {
        var rows = [["system", "benchmark", "metric", "baseline", "current", "change", "p", "threshold", "verdict"]]
        for m in interesting(report) {
            rows.append([
                m.system, m.benchmark, m.metric + shared(m), number(m.baselineMedian), number(m.currentMedian), change(m),
                p(m.pValue),
                String(format: "%.0f%%", m.thresholdPercent),
                m.verdict.rawValue.uppercased() + noisyMark(m) + (m.reason.map { ": \($0)" } ?? ""),
            ])
        }
        let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
        var text = ""
        for problem in report.incompatibilities { text += "INCOMPATIBLE: \(problem)\n" }
        for warning in report.warnings { text += "warning: \(warning)\n" }
        text += rows.map { row in
            row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }
        .joined(separator: "\n")
        text +=
            "\n\n\(counts(report)) (alpha \(report.alpha); \(verdictHelp))."
        return text
    }

    public static func markdown(_ report: ComparisonReport) -> String {
        var text = "## hvbench compare: \(report.currentLabel) vs \(report.baselineLabel)\n\n"
        for problem in report.incompatibilities { text += "> **Incompatible:** \(problem)\n>\n" }
        for warning in report.warnings { text += "> Warning: \(warning)\n>\n" }
        text +=
            "**\(counts(report))** (alpha \(report.alpha)).\n\n"
        text +=
            "| verdict | system | benchmark | metric | baseline | current | change | p | threshold |\n|---|---|---|---|---|---|---|---|---|\n"
        for m in interesting(report) {
            let verdict =
                m.verdict == .regression
                ? "**REGRESSION**" : m.verdict == .lost ? "**LOST**: \(escapeMarkdownCell(m.reason ?? ""))" : m.verdict.rawValue
            text +=
                "| \(verdict)\(noisyMark(m)) | \(m.system) | `\(m.benchmark)` | \(m.metric)\(shared(m)) | \(number(m.baselineMedian)) | "
                + "\(number(m.currentMedian)) \(m.unit) | \(change(m)) | \(p(m.pValue)) | \(String(format: "%.0f%%", m.thresholdPercent)) |\n"
        }
        return text + "\n_\(verdictHelp)._\n"
    }

    /// One test case per metric; regressions are failures, an incompatible baseline an error.
    public static func junit(_ report: ComparisonReport) -> String {
        let cases = report.metrics
        let failures = report.failures.count
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        xml +=
            "<testsuites name=\"hvbench compare\" tests=\"\(cases.count)\" failures=\"\(failures)\" errors=\"\(report.incompatibilities.isEmpty ? 0 : 1)\">\n"
        xml +=
            "  <testsuite name=\"\(escapeXML("\(report.currentLabel) vs \(report.baselineLabel)"))\" tests=\"\(cases.count)\" failures=\"\(failures)\" errors=\"\(report.incompatibilities.isEmpty ? 0 : 1)\" skipped=\"\(cases.filter { $0.verdict == .new || $0.verdict == .undecided }.count)\">\n"
        if !report.warnings.isEmpty {
            xml += "    <system-out>\(escapeXML(report.warnings.map { "warning: \($0)" }.joined(separator: "\n")))</system-out>\n"
        }
        if !report.incompatibilities.isEmpty {
            xml += "    <testcase classname=\"hvbench.environment\" name=\"compatibility\">\n"
            xml += "      <error message=\"\(escapeXML(report.incompatibilities.joined(separator: "; ")))\"/>\n    </testcase>\n"
        }
        for m in cases {
            let name = escapeXML(m.metric)
            let className = escapeXML("\(m.system).\(m.benchmark)")
            let detail =
                "baseline \(number(m.baselineMedian)) \(m.unit), current \(number(m.currentMedian)) \(m.unit), change \(percent(m.changePercent)), p \(p(m.pValue)), threshold \(String(format: "%.0f%%", m.thresholdPercent))"
            xml += "    <testcase classname=\"\(className)\" name=\"\(name)\">"
            switch m.verdict {
            case .regression:
                xml += "\n      <failure message=\"\(escapeXML("regression: \(detail)"))\" type=\"regression\"/>\n    "
            case .lost:
                xml +=
                    "\n      <failure message=\"\(escapeXML("lost: ok in the baseline (\(number(m.baselineMedian)) \(m.unit)); \(m.reason ?? "")"))\" type=\"lost\"/>\n    "
            case .new:
                xml += "<skipped message=\"\(m.verdict.rawValue)\"/>"
            case .undecided:
                xml += "<skipped message=\"\(escapeXML("undecided: \(m.reason ?? "too few rounds"); \(detail)"))\"/>"
            case .improvement, .unchanged:
                xml += "<system-out>\(escapeXML("\(m.verdict.rawValue): \(detail)"))</system-out>"
            }
            xml += "</testcase>\n"
        }
        return xml + "  </testsuite>\n</testsuites>\n"
    }
}
