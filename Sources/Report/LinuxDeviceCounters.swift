import Foundation
import Results

/// Linux's own drivers on each system's devices: for the Linux guest's disk and network jobs,
/// the median beside the counters per operation the VMM took between the job's milestones —
/// exits, doorbells, interrupts and interrupt-cause reads — so that "why is the emulated NIC
/// slower" is answered by the run that measured it (QEMU and native record none).
struct LinuxDeviceCounters {
    struct Row {
        let system: String
        let benchmark: String
        let metric: String
        let unit: String
        let median: Double
        let exits: Double?
        let doorbells: Double?
        let interrupts: Double?
        let causeReads: Double?
    }

    static func rows(_ model: ReportModel) -> [Row] {
        var rows: [Row] = []
        for benchmark in model.benchmarks {
            guard let definition = BenchmarkDefinition.named(benchmark), definition.guest == .linux,
                definition.needsNIC || definition.needsDisk
            else { continue }
            for system in model.systems {
                guard let result = model.result(system, benchmark), result.status == .ok, let exits = result.exits,
                    let metric = result.metrics.first
                else { continue }
                rows.append(
                    Row(
                        system: system, benchmark: benchmark, metric: metric.name, unit: metric.unit,
                        median: metric.summary.median, exits: exits.exitsPerOperation,
                        doorbells: exits.notificationsPerOperation, interrupts: exits.interruptsPerOperation,
                        causeReads: exits.interruptCauseReadsPerOperation))
            }
        }
        return rows
    }

    static let legend =
        "Per operation of the job (an I/O, a round trip, a KiB or MiB moved), counted by hvbench's VMM between /init's milestones 5 and 6 (the job's program start-up included); exits are port I/O and MMIO exits."

    private static func show(_ value: Double?) -> String { value.map { String(format: "%.3g", $0) } ?? "-" }

    static func markdown(_ model: ReportModel) -> String {
        let rows = rows(model)
        guard !rows.isEmpty else { return "" }
        var text = "\n### Linux's drivers on the device models\n\n"
        text += "| system | benchmark | metric | median | exits | doorbells | interrupts | cause reads |\n"
        text += "|---|---|---|---|---|---|---|---|\n"
        for row in rows {
            text +=
                "| \(row.system) | `\(row.benchmark)` | \(row.metric) (\(row.unit)) | \(formatNumber(row.median)) | "
                + "\(show(row.exits)) | \(show(row.doorbells)) | \(show(row.interrupts)) | \(show(row.causeReads)) |\n"
        }
        return text + "\n\(legend)\n"
    }

    static func html(_ model: ReportModel) -> String {
        let rows = rows(model)
        guard !rows.isEmpty else { return "" }
        var html =
            "<section id=\"linux-devices\"><h2>Linux's drivers on the device models</h2><table><thead><tr><th>system</th><th>benchmark</th><th>metric</th><th>median</th><th>exits</th><th>doorbells</th><th>interrupts</th><th>cause reads</th></tr></thead><tbody>"
        for row in rows {
            html +=
                "<tr><td>\(escapeXML(row.system))</td><td><code>\(escapeXML(row.benchmark))</code></td><td>\(escapeXML(row.metric)) (\(escapeXML(row.unit)))</td>"
                + "<td>\(formatNumber(row.median))</td><td>\(show(row.exits))</td><td>\(show(row.doorbells))</td>"
                + "<td>\(show(row.interrupts))</td><td>\(show(row.causeReads))</td></tr>"
        }
        return html + "</tbody></table><p class=\"hint\">\(escapeXML(legend))</p></section>\n"
    }
}
