import Foundation
import Results

/// The pages `hvbench serve` shows: the fleet's hosts, and per host every (system, benchmark)
/// over its runs — the history report's own charts, change points marked, each point linking to
/// its run's report — with the latest % of native. Pure: the server only fetches and sends.
public enum DashboardPages {
    /// A stored run as the dashboard lists it.
    public struct Run: Sendable {
        public var id: Int64
        public var results: RunResults

        public init(id: Int64, results: RunResults) {
            self.id = id
            self.results = results
        }
    }

    public static func index(hosts: [(host: String, runs: Int, latest: String?)], store: String) -> String {
        var body =
            "<header><h1>hvbench dashboard</h1><p>Store \(escapeXML(store)): \(hosts.count) host(s), "
            + "\(hosts.map(\.runs).reduce(0, +)) runs.</p></header>"
        body += "<table class=\"hosts\"><thead><tr><th>host</th><th>runs</th><th>latest run</th></tr></thead><tbody>"
        for (host, runs, latest) in hosts {
            body +=
                "<tr><td><a class=\"host\" href=\"/hosts/\(escapeXML(pathComponent(host)))\">\(escapeXML(host))</a></td>"
                + "<td>\(runs)</td><td>\(escapeXML(latest ?? "-"))</td></tr>"
        }
        return HTMLReport.page(title: "hvbench dashboard", body: body + "</tbody></table>")
    }

    /// One host's trends. `window`: a change starting within the newest runs is an alarm (as `history --check`).
    public static func host(_ host: String, runs: [Run], thresholds: ThresholdPolicy = ThresholdPolicy(), window: Int = 5)
        -> String
    {
        let history = History(runs.map(\.results))
        let links = runs.map { "/runs/\($0.id)" }
        let alarms = history.alarms(window: window, thresholds: thresholds)
        var body =
            "<header><h1>\(escapeXML(host))</h1><p><a href=\"/\">all hosts</a> · \(runs.count) runs from "
            + "\(escapeXML(runs.first?.results.startedAt ?? "-")) to \(escapeXML(runs.last?.results.startedAt ?? "-")). "
            + "Change points (E-divisive means, p &lt; 0.05) are marked where the new level starts, red when worse; "
            + "each point links to its run's report.</p></header>"
        if !alarms.isEmpty {
            body +=
                "<div class=\"warning alarms\"><strong>\(alarms.count) regression(s) within the newest \(window) runs:</strong><ul>"
            for alarm in alarms {
                body +=
                    "<li class=\"alarm\">\(escapeXML(alarm.series.key)) \(String(format: "%+.1f%%", alarm.change.changePercent)) "
                    + "from \(escapeXML(alarm.runLabel))</li>"
            }
            body += "</ul></div>"
        }
        body += latestTable(runs.last)
        body += "<h2>Trends</h2><div class=\"grid\">"
        var charted = Set<String>()
        for series in history.series where charted.insert("\(series.system) \(series.benchmark)").inserted {
            body += HistoryReport.lineChart(series, labels: history.runLabels, links: links)
        }
        body +=
            "</div><h2>Runs</h2><table class=\"runs\"><thead><tr><th>run</th><th>started</th><th>suite</th><th>commit</th></tr></thead><tbody>"
        for run in runs.reversed() {
            body +=
                "<tr><td><a href=\"/runs/\(run.id)\">\(run.id)</a></td><td>\(escapeXML(run.results.startedAt))</td>"
                + "<td>\(escapeXML(run.results.suite ?? "-"))</td><td>\(escapeXML(run.results.tool.gitCommit.map { String($0.prefix(10)) } ?? "-"))</td></tr>"
        }
        return HTMLReport.page(title: "hvbench: \(host)", body: body + "</tbody></table>")
    }

    /// The newest run's primary metric per (system, benchmark), with its % of native.
    static func latestTable(_ run: Run?) -> String {
        guard let run else { return "" }
        var html =
            "<h2>Latest run (<a href=\"/runs/\(run.id)\">\(run.id)</a>)</h2><table class=\"latest\"><thead><tr><th>system</th>"
            + "<th>benchmark</th><th>metric</th><th>median</th><th>% of native</th></tr></thead><tbody>"
        for result in run.results.results where result.status == .ok {
            guard let metric = result.metrics.first else { continue }
            let percent = run.results.percentOfNative(system: result.system, benchmark: result.benchmark, metric: metric)
            html +=
                "<tr><td>\(escapeXML(result.system))</td><td>\(escapeXML(result.benchmark))</td><td>\(escapeXML(metric.name))</td>"
                + "<td\(metric.summary.noisy ? " class=\"noisy\" title=\"noisy: CV above 5%\"" : "")>"
                + "\(formatNumber(metric.summary.median)) \(escapeXML(metric.unit))</td>"
                + "<td>\(percent.map { String(format: "%.1f%%", $0) } ?? "-")</td></tr>"
        }
        return html + "</tbody></table>"
    }

    /// A host id as a URL path component (host ids are letters, digits, '.', '-', '_').
    static func pathComponent(_ host: String) -> String {
        host.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: ".-_"))) ?? host
    }
}
