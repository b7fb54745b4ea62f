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

    static func table(_ model: ReportModel) -> ReportTable {
        ReportTable(
            id: "linux-devices", title: "Linux's drivers on the device models",
            headers: ["system", "benchmark", "metric", "median", "exits", "doorbells", "interrupts", "cause reads"],
            rows: rows(model).map { row in
                [
                    .text(row.system), .code(row.benchmark), .text("\(row.metric) (\(row.unit))"),
                    .text(formatNumber(row.median)), .text(show(row.exits)), .text(show(row.doorbells)),
                    .text(show(row.interrupts)), .text(show(row.causeReads)),
                ]
            }, legend: legend)
    }

    static func markdown(_ model: ReportModel) -> String { table(model).markdown }
    static func html(_ model: ReportModel) -> String { table(model).html }
}
