import Results
import Foundation

/// report.html: one self-contained file (inline CSS and SVG, no external resources) that works
/// offline. A few lines of script record how many charts the browser actually laid out, so a
/// headless-browser test can tell a drawn report from an empty one.
public enum HTMLReport {
    public static func render(_ run: RunResults, claims: [ClaimVerdict] = []) -> String {
        let model = ReportModel(run)
        var body = ""
        body += "<header id=\"top\"><h1>hvbench report\(run.suite.map { " — \(escapeXML($0)) suite" } ?? "")</h1>"
        body +=
            "<p>hvbench \(escapeXML(run.tool.version))\(run.tool.gitCommit.map { " (\(escapeXML(String($0.prefix(12)))))" } ?? "") · started \(escapeXML(run.startedAt)) · "
            + "\(model.systems.count) systems · \(model.benchmarks.count) benchmarks</p></header>\n"
        for warning in model.warnings { body += "<div class=\"warning\">⚠ \(escapeXML(warning))</div>\n" }
        body += summaryTable(model)
        body += charts(model)
        body += percentOfNative(model)
        body += ClaimsOutput.html(claims)
        body += percentiles(model)
        body += DriverComparison.html(model)
        body += LinuxDeviceCounters.html(model)
        body += exits(model)
        body += environment(model)
        return page(title: "hvbench report", body: body)
    }

    static func summaryTable(_ model: ReportModel) -> String {
        let vmSystems = model.systems.filter { !SystemRegistry.isBaseline($0) }
        var html = "<section id=\"summary\"><h2>Summary</h2><table><thead><tr><th>benchmark</th><th>metric</th>"
        html += model.systems.map { "<th>\(escapeXML($0))</th>" }.joined()
        html += vmSystems.map { "<th>\(escapeXML($0))<br>% of native</th>" }.joined() + "</tr></thead><tbody>\n"
        for benchmark in model.benchmarks {
            let metric = model.primaryMetric(benchmark)
            html +=
                "<tr><td><code>\(escapeXML(benchmark))</code></td><td>\(metric.map { "\(escapeXML($0.name)) (\(escapeXML($0.unit)))" } ?? "")</td>"
            for system in model.systems {
                let result = model.result(system, benchmark)
                let noisyCV = result?.metrics.first.flatMap { $0.summary.noisy ? $0.summary.cv : nil }
                let hover = result?.reason ?? noisyCV.map { String(format: "noisy: CV %.0f%% across rounds", $0 * 100) }
                let title = hover.map { " title=\"\(escapeXML($0))\"" } ?? ""
                let cls =
                    result.map {
                        $0.status == .ok ? (($0.metrics.first?.summary.noisy ?? false) ? "noisy" : "ok") : $0.status.rawValue
                    } ?? ""
                html += "<td class=\"\(cls)\"\(title)>\(escapeXML(model.cell(system, benchmark)))</td>"
            }
            for system in vmSystems {
                let figure = model.percentOfNative(system, benchmark)
                html +=
                    "<td>\(figure.map { String(format: "%.1f%% [%.1f, %.1f]", $0.value, $0.ci95Low, $0.ci95High) } ?? "")</td>"
            }
            html += "</tr>\n"
        }
        html +=
            "</tbody></table><p class=\"hint\">Median ± half-width of the 95% bootstrap CI of the median. Shaded cells are noisy (CV above 5%); hover one for its CV, or a skipped or failed cell for the reason.</p></section>\n"
        return html
    }

    static func bar(_ model: ReportModel, _ system: String, _ benchmark: String, metricName: String? = nil) -> BarChart.Bar? {
        guard let result = model.result(system, benchmark), result.status == .ok,
            let metric = metricName.map({ name in result.metrics.first { $0.name == name } }) ?? result.metrics.first
        else { return nil }
        let s = metric.summary
        return BarChart.Bar(series: system, value: s.median, low: s.ci95Low, high: s.ci95High, note: s.noisy ? "noisy" : nil)
    }

    static func charts(_ model: ReportModel) -> String {
        var html = ""
        let byGroup = Dictionary(grouping: model.benchmarks) { BenchmarkDefinition.named($0)?.group }
        // Compute and memory: different units, so one small chart per benchmark.
        if let compute = byGroup[.cpu] {
            html += "<section id=\"compute\"><h2>Compute and memory</h2><div class=\"grid\">"
            for benchmark in compute {
                guard let metric = model.primaryMetric(benchmark) else { continue }
                let bars = model.systems.compactMap { bar(model, $0, benchmark) }
                let series = bars.map(\.series)
                html += BarChart(
                    title: "\(benchmark) (\(metric.better == .higher ? "higher" : "lower") is better)", unit: metric.unit,
                    groups: [.init(category: benchmark, bars: bars)], series: series, width: 370, height: 260
                ).svg()
            }
            html += "</div></section>\n"
        }
        // Platform operations share a unit: one grouped chart, log scale when they span decades.
        if let platform = byGroup[.platform] {
            let groups = platform.map { benchmark in
                BarChart.Group(
                    category: benchmark.replacingOccurrences(of: "cpu.", with: ""),
                    bars: model.systems.compactMap { bar(model, $0, benchmark, metricName: "ns_per_op") })
            }.filter { !$0.bars.isEmpty }
            if !groups.isEmpty {
                html += "<section id=\"platform\"><h2>Platform operations</h2>"
                html += BarChart(
                    title: "time per operation (lower is better)", unit: "ns", groups: groups, series: model.systems, width: 900,
                    height: 340
                ).svg()
                html += "</section>\n"
            }
        }
        if let boot = byGroup[.boot] {
            for benchmark in boot {
                let bars = model.systems.compactMap { bar(model, $0, benchmark) }
                guard !bars.isEmpty else { continue }
                html += "<section id=\"boot\"><h2>Boot</h2>"
                html += BarChart(
                    title: "\(benchmark): VM created → guest main", unit: "ms", groups: [.init(category: benchmark, bars: bars)],
                    series: bars.map(\.series), width: 370, height: 260
                ).svg()
                html += "</section>\n"
            }
        }
        for (group, title) in [(BenchmarkDefinition.Group.network, "Network"), (.disk, "Disk"), (.memory, "Memory overcommit")] {
            guard let benchmarks = byGroup[group] else { continue }
            html += "<section id=\"\(group.rawValue)\"><h2>\(title)</h2><div class=\"grid\">"
            for benchmark in benchmarks {
                guard let metric = model.primaryMetric(benchmark) else { continue }
                let bars = model.systems.compactMap { bar(model, $0, benchmark) }
                html += BarChart(
                    title: "\(benchmark) (\(metric.better == .higher ? "higher" : "lower") is better)", unit: metric.unit,
                    groups: [.init(category: benchmark, bars: bars)], series: bars.map(\.series), width: 370, height: 260
                ).svg()
            }
            html += "</div></section>\n"
        }
        if let other = byGroup[nil] {
            html += "<section id=\"other\"><h2>Other benchmarks</h2><div class=\"grid\">"
            for benchmark in other {
                guard let metric = model.primaryMetric(benchmark) else { continue }
                let bars = model.systems.compactMap { bar(model, $0, benchmark) }
                html += BarChart(
                    title: "\(benchmark) — \(metric.name)", unit: metric.unit, groups: [.init(category: benchmark, bars: bars)],
                    series: bars.map(\.series),
                    width: 370, height: 260
                ).svg()
            }
            html += "</div></section>\n"
        }
        return html
    }

    static func percentOfNative(_ model: ReportModel) -> String {
        let figures = model.derived.filter { $0.kind == .percentOfNative }
        guard !figures.isEmpty else { return "" }
        let series = model.systems.filter { system in figures.contains { $0.numerator == system } }
        let groups = model.benchmarks.compactMap { benchmark -> BarChart.Group? in
            let bars = figures.filter { $0.benchmark == benchmark }.map {
                BarChart.Bar(series: $0.numerator, value: $0.value, low: $0.ci95Low, high: $0.ci95High, note: nil)
            }
            return bars.isEmpty ? nil : BarChart.Group(category: benchmark.replacingOccurrences(of: "cpu.", with: ""), bars: bars)
        }
        var html = "<section id=\"relative\"><h2>Speed relative to native</h2>"
        var chart = BarChart(
            title: "% of native (100 = native speed, higher is better)", unit: "% of native", groups: groups, series: series,
            width: 900, height: 320)
        chart.referenceLine = 100
        html += chart.svg()
        let ratios = model.derived.filter { $0.kind == .speedup }
        if !ratios.isEmpty {
            html += "<table><thead><tr><th>comparison</th><th>benchmark</th><th>speedup [95% CI]</th></tr></thead><tbody>"
            for ratio in ratios {
                html +=
                    "<tr><td>\(escapeXML(ratio.numerator)) vs \(escapeXML(ratio.denominator))</td><td><code>\(escapeXML(ratio.benchmark))</code></td>"
                html += "<td>\(String(format: "%.2f× [%.2f, %.2f]", ratio.value, ratio.ci95Low, ratio.ci95High))</td></tr>"
            }
            html += "</tbody></table>"
        }
        return html + "</section>\n"
    }

    static func percentiles(_ model: ReportModel) -> String {
        var plots = ""
        for benchmark in model.benchmarks {
            let series = model.systems.compactMap { system -> PercentilePlot.Series? in
                guard let summary = model.result(system, benchmark)?.metrics.first(where: { $0.name == "ns_per_op" })?.summary,
                    let p50 = summary.p50, let p90 = summary.p90, let p99 = summary.p99, let p999 = summary.p999
                else { return nil }
                return .init(system: system, values: [p50, p90, p99, p999])
            }
            if !series.isEmpty { plots += PercentilePlot(title: "\(benchmark) per operation", series: series).svg() }
        }
        guard !plots.isEmpty else { return "" }
        return
            "<section id=\"percentiles\"><h2>Operation latency percentiles</h2><p class=\"hint\">Each operation timed on its own in a separate pass (HdrHistogram); the medians above come from whole repetitions.</p><div class=\"grid\">\(plots)</div></section>\n"
    }

    static func exits(_ model: ReportModel) -> String {
        let rows = model.run.results.filter { ($0.exits != nil || $0.guestInterrupts != nil) && $0.status == .ok }
        guard !rows.isEmpty else { return "" }
        func rate(_ value: Double?) -> String { value.map { String(format: "%.3g", $0) } ?? "-" }
        var html =
            "<section id=\"exits\"><h2>VM exits and interrupts</h2><table><thead><tr><th>system</th><th>benchmark</th><th>port I/O exits</th><th>MMIO exits</th><th>doorbells</th><th>unclaimed port reads</th><th>unclaimed MMIO reads</th><th>exits per operation</th><th>doorbells per operation</th><th>interrupts per operation</th><th>cause reads per operation</th><th>guest-counted interrupts per operation</th><th>spurious per operation</th><th>per vCPU: exits / interrupts per operation</th></tr></thead><tbody>"
        for result in rows {
            let exits = result.exits
            let counts = [exits?.portIO, exits?.mmio, exits?.notifications, exits?.unclaimedPortReads, exits?.unclaimedMMIOReads]
                .map { $0.map(String.init) ?? "-" }
            html += "<tr><td>\(escapeXML(result.system))</td><td><code>\(escapeXML(result.benchmark))</code></td>"
            html += counts.map { "<td>\($0)</td>" }.joined()
            let rates = [
                exits?.exitsPerOperation, exits?.notificationsPerOperation, exits?.interruptsPerOperation,
                exits?.interruptCauseReadsPerOperation, result.guestInterrupts?.takenPerOperation,
                result.guestInterrupts?.spuriousPerOperation,
            ]
            html += rates.map { "<td>\(rate($0))</td>" }.joined()
            let perVCPU = exits?.perVCPURates?.map { "\(rate($0.exits)) / \(rate($0.interrupts))" }
            html += "<td>\(perVCPU.map { $0.joined(separator: "; ") } ?? "-")</td></tr>"
        }
        return html
            + "</tbody></table><p class=\"hint\">Counts for the whole boot, console output included. Interrupts: taken by the emulator's local APIC, or injected by KVM (its irq_injections statistic). Cause reads: the guest reading an interrupt-cause register (e1000 ICR, virtio ISR), which MSI-X makes unnecessary. Guest-counted: device interrupts the guest's own handlers took (also under QEMU); spurious: those that found the cause register clear. Per vCPU (guests with more than one, in vCPU order): which CPU of an SMP benchmark exits and takes the interrupts.</p></section>\n"
    }

    static func environment(_ model: ReportModel) -> String {
        let environments = model.environments
        var html = "<section id=\"environment\"><h2>Environment</h2><table><thead><tr><th></th>"
        html +=
            environments.map { "<th>\(escapeXML($0.0.isEmpty ? $0.1.hostname : $0.0))</th>" }.joined() + "</tr></thead><tbody>"
        let rows: [(String, (EnvironmentRecord) -> String)] = [
            ("CPU", { "\($0.cpuModel) (\($0.logicalCPUs) logical CPUs)" }),
            ("kernel", { "\($0.kernel), \($0.operatingSystem)" }),
            ("KVM module", { $0.kvm.module + ($0.kvm.softwareAssisted ? " (software-assisted)" : "") }),
            ("hardware virtualization", { $0.kvm.hardwareVirtualization ? "yes" : "no" }),
            ("running in a VM", { $0.runningInVM ? "yes" : "no" }),
            ("TSC", { "\($0.tscKHz) kHz" }),
            ("NUMA", { $0.numaNodes.map { "node \($0.id): \($0.memoryMiB) MiB" }.joined(separator: ", ") }),
            ("guest image", { $0.guestImageHash ?? "-" }),
        ]
        for (name, value) in rows {
            html += "<tr><th>\(name)</th>" + environments.map { "<td>\(escapeXML(value($0.1)))</td>" }.joined() + "</tr>"
        }
        return html + "</tbody></table></section>\n"
    }

    static func page(title: String, body: String) -> String {
        """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(escapeXML(title))</title>
        <style>
        body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1180px; color: #222; padding: 0 16px; }
        h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
        header p, .hint { color: #666; margin: 4px 0; }
        .warning { background: #fff4e0; border-left: 4px solid #f0a020; padding: 8px 12px; margin: 10px 0; }
        table { border-collapse: collapse; margin: 6px 0; } th, td { border: 1px solid #e2e2e2; padding: 4px 8px; text-align: right; }
        th { background: #f6f6f6; } td:first-child, th:first-child, td:nth-child(2) { text-align: left; }
        td.noisy { background: #fff8e6; } td.failed { background: #fde8e8; color: #a00; } td.skipped { color: #999; }
        .grid { display: flex; flex-wrap: wrap; gap: 12px; }
        svg.chart { background: #fff; border: 1px solid #eee; }
        .chart-title { font-size: 13px; font-weight: 600; } .tick, .legend, .category, .note, .axis-label { font-size: 11px; fill: #444; }
        .grid line, line.grid { stroke: #eee; } .axis { stroke: #888; } .ci { stroke: #222; stroke-width: 1.2; }
        .reference { stroke: #c00; stroke-dasharray: 4 3; } .note { fill: #a60; }
        </style>
        </head>
        <body>
        \(body)
        <script>
        // Records what the browser actually laid out (read by the headless-browser test).
        window.addEventListener('load', function () {
          var charts = Array.prototype.filter.call(document.querySelectorAll('svg.chart'), function (s) { var b = s.getBBox(); return b.width > 0 && b.height > 0; });
          var bars = Array.prototype.filter.call(document.querySelectorAll('rect.bar'), function (r) { return r.getBBox().height > 0; });
          document.body.setAttribute('data-charts-drawn', String(charts.length));
          document.body.setAttribute('data-bars-drawn', String(bars.length));
        });
        </script>
        </body>
        </html>

        """
    }
}
