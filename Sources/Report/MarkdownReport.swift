import Results
import Foundation

/// summary.md: a compact table fit for a CI comment or a pull request.
public enum MarkdownReport {
    public static func render(_ run: RunResults) -> String {
        let model = ReportModel(run)
        var text = "## hvbench results\(run.suite.map { " — \($0) suite" } ?? "")\n\n"
        for (host, environment) in model.environments {
            text +=
                "- \(host.isEmpty ? environment.hostname : host): \(environment.cpuModel), kernel \(environment.kernel), "
                + "KVM `\(environment.kvm.module)`\(environment.kvm.softwareAssisted ? " (software-assisted)" : ""), "
                + "TSC \(environment.tscKHz / 1000) MHz, guest \(environment.guestImageHash ?? "-")\n"
        }
        text +=
            "- hvbench \(run.tool.version)\(run.tool.gitCommit.map { " (\($0.prefix(12)))" } ?? ""), started \(run.startedAt)\n\n"
        for warning in model.warnings { text += "> **Warning:** \(warning)\n>\n" }
        if !model.warnings.isEmpty { text += "\n" }

        let vmSystems = model.systems.filter { !SystemRegistry.isBaseline($0) }
        var header = ["benchmark", "metric"] + model.systems
        header += vmSystems.map { "\($0) % of native" }
        text += "| " + header.joined(separator: " | ") + " |\n"
        text += "|" + header.map { _ in "---" }.joined(separator: "|") + "|\n"
        for benchmark in model.benchmarks {
            guard let metric = model.primaryMetric(benchmark) else {
                let statuses = model.systems.map { model.cell($0, benchmark) }
                text +=
                    "| `\(benchmark)` | | " + statuses.joined(separator: " | ") + vmSystems.map { _ in " | " }.joined() + " |\n"
                continue
            }
            var row = [
                "`\(benchmark)`", "\(metric.name) (\(metric.unit), \(metric.better == .higher ? "higher" : "lower") is better)",
            ]
            row += model.systems.map { model.cell($0, benchmark) }
            row += vmSystems.map { system in
                model.percentOfNative(system, benchmark).map {
                    "\(String(format: "%.1f", $0.value))% [\(String(format: "%.1f", $0.ci95Low)), \(String(format: "%.1f", $0.ci95High))]"
                } ?? ""
            }
            text += "| " + row.joined(separator: " | ") + " |\n"
        }
        let ratios = model.derived.filter { $0.kind == .speedup }
        if !ratios.isEmpty {
            text += "\n| comparison | benchmark | speedup [95% CI] |\n|---|---|---|\n"
            for ratio in ratios {
                text +=
                    "| \(ratio.numerator) vs \(ratio.denominator) | `\(ratio.benchmark)` | "
                    + "\(String(format: "%.2f", ratio.value))× [\(String(format: "%.2f", ratio.ci95Low)), \(String(format: "%.2f", ratio.ci95High))] |\n"
            }
        }
        text += DriverComparison.markdown(model)
        text += LinuxDeviceCounters.markdown(model)
        text += "\nMedians ± half-width of the 95% bootstrap CI. % of native: 100 = native speed.\n"
        return text
    }
}
