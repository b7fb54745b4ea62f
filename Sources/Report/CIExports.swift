import Foundation
import Results

/// A run in the formats CI tools and monitoring read: github-action-benchmark's custom JSON,
/// Bencher's Metric Format, and Prometheus/OpenMetrics text. Each carries every ok metric's
/// median and 95% CI, named "system/benchmark/metric".
public enum CIExports {
    static func name(_ result: BenchmarkResult, _ metric: Metric) -> String {
        "\(result.system)/\(result.benchmark)/\(metric.name)"
    }

    static func okMetrics(_ run: RunResults) -> [(BenchmarkResult, Metric)] {
        run.results.filter { $0.status == .ok }.flatMap { result in
            result.metrics.filter { $0.summary.median.isFinite }.map { (result, $0) }
        }
    }

    static func json(_ object: Any) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    /// github-action-benchmark takes one direction per file: `customSmallerIsBetter` gets the
    /// lower-is-better metrics, `customBiggerIsBetter` the others.
    public static func githubActionBenchmark(_ run: RunResults, better: Better) -> String {
        let entries = okMetrics(run).filter { $0.1.better == better }.map { result, metric -> [String: Any] in
            let summary = metric.summary
            var entry: [String: Any] = ["name": name(result, metric), "unit": metric.unit, "value": summary.median]
            if summary.ci95Low.isFinite && summary.ci95High.isFinite {
                entry["range"] = "95% CI \(formatNumber(summary.ci95Low))..\(formatNumber(summary.ci95High))"
            }
            entry["extra"] = "\(metric.replicates.count) replicates" + (summary.noisy ? ", noisy (CV above 5%)" : "")
            return entry
        }
        return json(entries)
    }

    /// Bencher Metric Format: benchmark → measure → value with lower and upper bounds. The
    /// measure is the metric's name and unit ("ns_per_op (ns)") so distinct units stay distinct.
    public static func bencher(_ run: RunResults) -> String {
        var document: [String: [String: [String: Double]]] = [:]
        for (result, metric) in okMetrics(run) {
            var value = ["value": metric.summary.median]
            if metric.summary.ci95Low.isFinite { value["lower_value"] = metric.summary.ci95Low }
            if metric.summary.ci95High.isFinite { value["upper_value"] = metric.summary.ci95High }
            document["\(result.system)/\(result.benchmark)", default: [:]]["\(metric.name) (\(metric.unit))"] = value
        }
        return json(document)
    }

    /// OpenMetrics text: gauges of the median, the CI bounds and % of native, labelled with the
    /// host, system, benchmark, metric and unit; ends with "# EOF" as the format requires.
    public static func openMetrics(_ run: RunResults, host: String) -> String {
        func label(_ value: String) -> String {
            value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
        }
        func number(_ value: Double) -> String { String(format: "%.17g", value) }
        let families: [(String, String, (RunResults, BenchmarkResult, Metric) -> Double?)] = [
            ("hvbench_median", "Median of the metric over the run's rounds.", { _, _, m in m.summary.median }),
            ("hvbench_ci95_low", "Lower bound of the median's 95% confidence interval.", { _, _, m in m.summary.ci95Low }),
            ("hvbench_ci95_high", "Upper bound of the median's 95% confidence interval.", { _, _, m in m.summary.ci95High }),
            (
                "hvbench_percent_of_native", "The metric as a percentage of native speed (100 = native).",
                { run, r, m in run.percentOfNative(system: r.system, benchmark: r.benchmark, metric: m) }
            ),
        ]
        var text = ""
        let metrics = okMetrics(run)
        for (family, help, value) in families {
            text += "# TYPE \(family) gauge\n# HELP \(family) \(help)\n"
            for (result, metric) in metrics {
                guard let figure = value(run, result, metric), figure.isFinite else { continue }
                text +=
                    "\(family){host=\"\(label(host))\",system=\"\(label(result.system))\",benchmark=\"\(label(result.benchmark))\","
                    + "metric=\"\(label(metric.name))\",unit=\"\(label(metric.unit))\"} \(number(figure))\n"
            }
        }
        return text + "# EOF\n"
    }
}
