/// Figures derived from pairs of systems on the same benchmark and host: "% of native" for every
/// VM mode, and the ratios between modes that the classic claims are about.
public struct DerivedFigure: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// 100 * performance(system) / performance(native).
        case percentOfNative = "percent-of-native"
        /// performance(numerator) / performance(denominator); > 1 means the numerator is better.
        case speedup
    }

    public var kind: Kind
    public var benchmark: String
    public var metric: String
    public var numerator: String
    public var denominator: String
    public var value: Double
    public var ci95Low: Double
    public var ci95High: Double
}

extension RunResults {
    /// Systems are "mode" or, in merged reports, "host/mode"; comparisons stay within one host.
    static func split(_ system: String) -> (host: String, mode: String) {
        guard let slash = system.lastIndex(of: "/") else { return ("", system) }
        return (String(system[..<slash]), String(system[system.index(after: slash)...]))
    }

    /// Every derived figure the results allow, for each benchmark's primary (first) metric.
    /// Intervals come from a seeded bootstrap, so they are the same every time.
    public func derivedFigures() -> [DerivedFigure] {
        var figures: [DerivedFigure] = []
        let okResults = results.filter { $0.status == .ok && !$0.metrics.isEmpty }
        func find(_ host: String, _ mode: String, _ benchmark: String) -> BenchmarkResult? {
            okResults.first { $0.benchmark == benchmark && Self.split($0.system) == (host, mode) }
        }
        for result in okResults {
            let (host, mode) = Self.split(result.system)
            let metric = result.metrics[0]
            func figure(_ kind: DerivedFigure.Kind, against other: BenchmarkResult) -> DerivedFigure? {
                guard let otherMetric = other.metrics.first(where: { $0.name == metric.name }) else { return nil }
                // Performance is the value when higher is better and its reciprocal otherwise,
                // so the ratio reads the same way for throughputs and for times.
                let ratio =
                    metric.better == .higher ? metric.ratio(to: otherMetric) : otherMetric.ratio(to: metric)
                guard let ratio else { return nil }
                let scale = kind == .percentOfNative ? 100.0 : 1.0
                return DerivedFigure(
                    kind: kind, benchmark: result.benchmark, metric: metric.name, numerator: result.system,
                    denominator: other.system,
                    value: ratio.ratio * scale, ci95Low: ratio.low * scale, ci95High: ratio.high * scale)
            }
            if !SystemRegistry.isBaseline(mode), let native = find(host, SystemDefinition.native.name, result.benchmark),
                let f = figure(.percentOfNative, against: native)
            {
                figures.append(f)
            }
            for denominator in SystemRegistry.named(mode)?.comparedWith ?? [] {
                if let other = find(host, denominator, result.benchmark), let f = figure(.speedup, against: other) {
                    figures.append(f)
                }
            }
        }
        return figures
    }
}
