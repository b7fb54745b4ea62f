import Results
import Foundation

/// What the Markdown and HTML reports show, computed once from a run.
struct ReportModel {
    let run: RunResults
    let systems: [String]
    let derived: [DerivedFigure]

    init(_ run: RunResults) {
        self.run = run
        var seen: [String] = []
        for result in run.results where !seen.contains(result.system) { seen.append(result.system) }
        func rank(_ system: String) -> (String, Int) {
            let parts = system.split(separator: "/").map(String.init)
            let mode = parts.last ?? system
            return (parts.count > 1 ? parts[0] : "", SystemRegistry.order(mode))
        }
        systems = seen.sorted { rank($0) < rank($1) }
        derived = run.derived ?? run.derivedFigures()
    }

    var benchmarks: [String] {
        var seen: [String] = []
        for result in run.results where !seen.contains(result.benchmark) { seen.append(result.benchmark) }
        let catalogue = BenchmarkDefinition.all.map(\.id)
        return seen.sorted { (catalogue.firstIndex(of: $0) ?? 999, $0) < (catalogue.firstIndex(of: $1) ?? 999, $1) }
    }

    func result(_ system: String, _ benchmark: String) -> BenchmarkResult? {
        run.results.first { $0.system == system && $0.benchmark == benchmark }
    }

    /// The metric a benchmark is summarised by (its first), from whichever system measured it.
    func primaryMetric(_ benchmark: String) -> (name: String, unit: String, better: Better)? {
        for system in systems {
            if let metric = result(system, benchmark)?.metrics.first { return (metric.name, metric.unit, metric.better) }
        }
        return nil
    }

    func percentOfNative(_ system: String, _ benchmark: String) -> DerivedFigure? {
        derived.first { $0.kind == .percentOfNative && $0.numerator == system && $0.benchmark == benchmark }
    }

    var noisy: [(String, String, Double)] {
        run.results.compactMap { result in
            guard let metric = result.metrics.first, metric.summary.noisy else { return nil }
            return (result.system, result.benchmark, metric.summary.cv)
        }
    }

    /// One sentence instead of a list: how many results are noisy and where, the cells
    /// themselves being marked in the tables.
    var noisySummary: String? {
        let noisy = self.noisy
        guard !noisy.isEmpty else { return nil }
        let measured = run.results.filter { $0.status == .ok && !$0.metrics.isEmpty }.count
        let bySystem = Dictionary(grouping: noisy, by: \.0).sorted { $0.key < $1.key }
            .map { "\($0.key) \($0.value.count)" }.joined(separator: ", ")
        let worst =
            noisy.max { $0.2 < $1.2 }.map { " (widest: \($0.0) \($0.1), CV \(String(format: "%.0f", $0.2 * 100))%)" } ?? ""
        return "\(noisy.count) of \(measured) results are noisy (CV above \(Int(Summary.noisyThreshold * 100))%), marked "
            + "\"(noisy)\" where they appear: \(bySystem)\(worst). Do not read small differences into them."
    }

    var failures: [BenchmarkResult] { run.results.filter { $0.status == .failed } }

    /// Host environments, keyed by the system prefix ("" for a single-host run).
    var environments: [(String, EnvironmentRecord)] {
        if let hosts = run.hosts, !hosts.isEmpty { return hosts.sorted { $0.key < $1.key } }
        return [("", run.environment)]
    }

    var warnings: [String] {
        var warnings: [String] = run.slowdownWarning.map { [$0] } ?? []
        for (host, environment) in environments where environment.kvm.softwareAssisted || !environment.kvm.usable {
            warnings.append((host.isEmpty ? "" : "\(host): ") + environment.virtualizationNote)
        }
        if let noisy = noisySummary { warnings.append(noisy) }
        if !failures.isEmpty {
            warnings.append(
                "Failed: " + failures.map { "\($0.system) \($0.benchmark): \($0.reason ?? "")" }.joined(separator: "; "))
        }
        return warnings
    }

    func cell(_ system: String, _ benchmark: String) -> String {
        guard let result = result(system, benchmark) else { return "" }
        switch result.status {
        case .skipped: return "skipped"
        case .failed: return "FAILED"
        case .ok:
            guard let metric = result.metrics.first else { return "" }
            let s = metric.summary
            let half = s.median != 0 ? (s.ci95High - s.ci95Low) / 2 / abs(s.median) * 100 : 0
            return "\(formatNumber(s.median)) ±\(String(format: half < 10 ? "%.1f" : "%.0f", half))%"
                + (s.noisy ? " (noisy)" : "")
        }
    }
}
