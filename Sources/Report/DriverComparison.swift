import Foundation
import Results

/// Polling and interrupt-driven drivers side by side: for every system that ran both a
/// benchmark and its -irq variant, the two medians and the per-operation counters that explain
/// the difference (exits, interrupts, interrupt-cause reads, spurious deliveries).
struct DriverComparison {
    struct Row {
        let system: String
        let benchmark: String
        let metric: String
        let unit: String
        let polling: Double
        let interruptDriven: Double
        let pollingCounters: Counters
        let interruptCounters: Counters
        /// Interrupt-driven over polling in the metric's "better" direction: > 1 = faster.
        var advantage: Double
    }

    /// Per-operation counts; nil where the system does not record them (QEMU has no exits).
    struct Counters {
        var exits: Double?
        var interrupts: Double?
        var causeReads: Double?
        var spurious: Double?

        init(_ result: BenchmarkResult) {
            exits = result.exits?.exitsPerOperation
            interrupts = result.exits?.interruptsPerOperation ?? result.guestInterrupts?.takenPerOperation
            causeReads = result.exits?.interruptCauseReadsPerOperation
            spurious = result.guestInterrupts?.spuriousPerOperation
        }

        var text: String {
            func show(_ value: Double?) -> String { value.map { String(format: "%.3g", $0) } ?? "-" }
            return "\(show(exits)) / \(show(interrupts)) / \(show(causeReads)) / \(show(spurious))"
        }
    }

    static let suffix = "-irq"

    static func rows(_ model: ReportModel) -> [Row] {
        var rows: [Row] = []
        for system in model.systems {
            for benchmark in model.benchmarks where benchmark.hasSuffix(suffix) {
                let base = String(benchmark.dropLast(suffix.count))
                guard let polling = model.result(system, base), let interrupt = model.result(system, benchmark),
                    polling.status == .ok, interrupt.status == .ok, let pollingMetric = polling.metrics.first,
                    let interruptMetric = interrupt.metrics.first(where: { $0.name == pollingMetric.name })
                else { continue }
                let a = pollingMetric.summary.median
                let b = interruptMetric.summary.median
                guard a > 0, b > 0 else { continue }
                rows.append(
                    Row(
                        system: system, benchmark: base, metric: pollingMetric.name, unit: pollingMetric.unit, polling: a,
                        interruptDriven: b, pollingCounters: Counters(polling), interruptCounters: Counters(interrupt),
                        advantage: pollingMetric.better == .higher ? b / a : a / b))
            }
        }
        return rows
    }

    static let legend =
        "Counters per operation: exits / interrupts / interrupt-cause reads / spurious interrupts (\"-\": not recorded on that system). Advantage: interrupt-driven over polling, above 1 = the interrupt-driven driver is faster."

    static func table(_ model: ReportModel) -> ReportTable {
        ReportTable(
            id: "drivers", title: "Polling vs interrupt-driven drivers",
            headers: [
                "system", "benchmark", "metric", "polling", "interrupt-driven", "advantage", "polling counters", "-irq counters",
            ],
            rows: rows(model).map { row in
                [
                    .text(row.system), .code(row.benchmark), .text("\(row.metric) (\(row.unit))"),
                    .text(formatNumber(row.polling)), .text(formatNumber(row.interruptDriven)),
                    .text("\(String(format: "%.2f", row.advantage))×"), .text(row.pollingCounters.text),
                    .text(row.interruptCounters.text),
                ]
            }, legend: legend)
    }

    static func markdown(_ model: ReportModel) -> String { table(model).markdown }
    static func html(_ model: ReportModel) -> String { table(model).html }
}
