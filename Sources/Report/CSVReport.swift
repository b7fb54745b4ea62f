import Results
import CSV
import Foundation

/// results.csv: the results in tidy form, one row per system x benchmark x metric, with the
/// summary and the environment columns that matter when rows from several runs are combined.
public enum CSVReport {
    public static let header = [
        "system", "benchmark", "metric", "unit", "better", "status", "reason", "privilege", "engine", "n", "median", "mean",
        "stddev", "cv", "ci95_low", "ci95_high", "min", "max", "p50", "p90", "p99", "p999", "noisy", "outliers",
        "percent_of_native",
        "samples", "exits_pio", "exits_mmio", "exits_per_op", "doorbells_per_op", "interrupts_per_op",
        "cause_reads_per_op", "guest_interrupts_per_op", "spurious_interrupts_per_op",
        "host", "cpu_model", "kernel", "kvm_module", "kvm_software_assisted", "tsc_khz", "guest_image_hash", "tool_version",
        "git_commit", "started_at", "injected_slowdown_percent",
    ]

    public static func render(_ run: RunResults) throws -> Data {
        let stream = OutputStream(toMemory: ())
        let writer = try CSVWriter(stream: stream)
        try writer.write(row: header)
        let environment = run.environment
        let context = [
            environment.hostname, environment.cpuModel, environment.kernel, environment.kvm.module,
            String(environment.kvm.softwareAssisted), String(environment.tscKHz), environment.guestImageHash ?? "",
            run.tool.version, run.tool.gitCommit ?? "", run.startedAt, run.injectedSlowdownPercent.map { String($0) } ?? "",
        ]
        for result in run.results {
            let counts: [String] = [
                result.exits.map { String($0.portIO) } ?? "", result.exits.map { String($0.mmio) } ?? "",
            ]
            let rates: [Double?] = [
                result.exits?.exitsPerOperation, result.exits?.notificationsPerOperation, result.exits?.interruptsPerOperation,
                result.exits?.interruptCauseReadsPerOperation, result.guestInterrupts?.takenPerOperation,
                result.guestInterrupts?.spuriousPerOperation,
            ]
            let exits = counts + rates.map { $0.map(number) ?? "" }
            let common = [result.system, result.benchmark]
            if result.metrics.isEmpty {
                let row =
                    common + [
                        "", "", "", result.status.rawValue, result.reason ?? "", result.privilege ?? "", result.engine ?? "", "0",
                    ] + Array(repeating: "", count: 16) + exits + context
                try writer.write(row: row)
                continue
            }
            for metric in result.metrics {
                let s = metric.summary
                let percent = run.percentOfNative(system: result.system, benchmark: result.benchmark, metric: metric)
                let row =
                    common + [
                        metric.name, metric.unit, metric.better.rawValue, result.status.rawValue, result.reason ?? "",
                        result.privilege ?? "", result.engine ?? "", String(metric.samples.count), number(s.median),
                        number(s.mean),
                        number(s.stddev), number(s.cv), number(s.ci95Low), number(s.ci95High), number(s.min), number(s.max),
                        s.p50.map(number) ?? "", s.p90.map(number) ?? "", s.p99.map(number) ?? "", s.p999.map(number) ?? "",
                        String(s.noisy), String(s.outliers.count), percent.map(number) ?? "",
                        metric.samples.map(number).joined(separator: ";"),
                    ] + exits + context
                try writer.write(row: row)
            }
        }
        writer.stream.close()
        guard let data = stream.property(forKey: .dataWrittenToMemoryStreamKey) as? Data else {
            throw CocoaError(.fileWriteUnknown)
        }
        return data
    }

    static func number(_ value: Double) -> String {
        value.isFinite ? String(format: "%.6g", value) : String(value)
    }
}
