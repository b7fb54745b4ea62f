import Results
import Foundation

/// The table `hvbench run` prints: median, 95% CI, CV and % of native per metric.
public enum TableReport {
    public static func render(_ run: RunResults) -> String {
        var rows: [[String]] = [["system", "benchmark", "metric", "median", "95% CI", "CV", "% native", "status"]]
        for result in run.results {
            guard result.status == .ok else {
                rows.append([
                    result.system, result.benchmark, "", "", "", "", "", "\(result.status.rawValue): \(result.reason ?? "")",
                ])
                continue
            }
            for metric in result.metrics.prefix(1) {  // the benchmark's headline metric
                let s = metric.summary
                let percent = run.percentOfNative(system: result.system, benchmark: result.benchmark, metric: metric)
                rows.append([
                    result.system, result.benchmark, metric.name, "\(format(s.median)) \(metric.unit)",
                    "[\(format(s.ci95Low)), \(format(s.ci95High))]", String(format: "%.1f%%", s.cv * 100),
                    percent.map { String(format: "%.1f%%", $0) } ?? "-", s.cv > 0.05 ? "ok (noisy)" : "ok",
                ])
            }
        }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        let table = rows.enumerated().map { index, row in
            let line = row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
            return index == 0 ? line + "\n" + String(repeating: "-", count: min(line.count + 10, 140)) : line
        }.joined(separator: "\n")
        return run.slowdownWarning.map { "WARNING: \($0)\n\n" + table } ?? table
    }

    /// Three significant figures, without exponent notation for ordinary magnitudes.
    public static func format(_ value: Double) -> String {
        let magnitude = abs(value)
        if magnitude >= 100 || magnitude == 0 { return String(format: "%.0f", value) }
        if magnitude >= 10 { return String(format: "%.1f", value) }
        if magnitude >= 1 { return String(format: "%.2f", value) }
        return String(format: "%.3g", value)
    }
}
