import Foundation
import Yams

/// A published performance claim and a check over results that tests it
/// (`Workloads/claims/*.yaml`).
public struct Claim: Codable, Sendable, Equatable {
    public struct Source: Codable, Sendable, Equatable {
        public var title: String
        public var authors: String?
        public var venue: String?
        public var vendor: String?
        public var year: Int
    }

    /// A metric of one system on one benchmark.
    public struct Reference: Codable, Sendable, Equatable, CustomStringConvertible {
        public var system: String
        public var benchmark: String
        public var metric: String
        public var description: String { "\(system) \(benchmark) \(metric)" }
    }

    public struct Ratio: Codable, Sendable, Equatable {
        public var numerator: Reference
        public var denominator: Reference
    }

    /// Either `value` (the median of one metric) or `ratio` (of two medians), bounded by
    /// `atLeast` and/or `atMost`.
    public struct Check: Codable, Sendable, Equatable {
        public var value: Reference?
        public var ratio: Ratio?
        public var atLeast: Double?
        public var atMost: Double?
    }

    public var id: String
    public var source: Source
    public var claim: String
    /// How the claim is turned into a check here, and what differs from the original setting.
    public var interpretation: String?
    public var check: Check
    /// A ratio shown beside the verdict but not judged: the figure the claim was judged on
    /// before (e.g. the polling driver's beside the interrupt-driven one).
    public var context: Ratio?

    public struct LoadError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func load(from url: URL) throws -> Claim {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw LoadError(description: "\(url.path): cannot read the file")
        }
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else { throw LoadError(description: "\(url.path): the file is empty") }
            root = node
        } catch let error as YamlError {
            throw LoadError(
                description:
                    "\(url.path)\(YAMLLocation.line(of: error).map { ":\($0)" } ?? ""): malformed YAML: \(YAMLLocation.message(of: error))"
            )
        }
        let claim: Claim
        do {
            claim = try YAMLDecoder().decode(Claim.self, from: root)
        } catch let error as DecodingError {
            let (path, message) = YAMLLocation.describe(error)
            let line = YAMLLocation.line(of: path, in: root).map { ":\($0)" } ?? ""
            throw LoadError(description: "\(url.path)\(line): not a valid claim: \(message)")
        } catch {
            throw LoadError(description: "\(url.path): not a valid claim: \(error)")
        }
        let check = claim.check
        guard (check.value == nil) != (check.ratio == nil) else {
            throw LoadError(description: "\(url.path): check needs exactly one of 'value' or 'ratio'")
        }
        guard check.atLeast != nil || check.atMost != nil else {
            throw LoadError(description: "\(url.path): check needs 'atLeast' and/or 'atMost'")
        }
        let references = [
            check.value, check.ratio?.numerator, check.ratio?.denominator, claim.context?.numerator,
            claim.context?.denominator,
        ]
        for reference in references.compactMap({ $0 }) where BenchmarkDefinition.named(reference.benchmark) == nil {
            throw LoadError(description: "\(url.path): \(BenchmarkDefinition.unknown(reference.benchmark))")
        }
        return claim
    }

    public static func loadAll(in workspace: Workspace) throws -> [Claim] {
        let folder = workspace.workloads.appendingPathComponent("claims")
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".yaml") }
            .sorted()
        return try files.map { try load(from: folder.appendingPathComponent($0)) }
    }
}

public struct ClaimVerdict: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable {
        case reproduced
        case notReproduced = "not reproduced"
        /// The 95% CI straddles the bound.
        case inconclusive
        /// The results lack a system or benchmark the check needs.
        case insufficientData = "insufficient data"
    }

    public var claim: Claim
    public var outcome: Outcome
    public var value: Double?
    public var ci95Low: Double?
    public var ci95High: Double?
    public var evidence: String
}

extension Claim {
    /// Per-operation counters a check may name like a metric. They are exact counts of one
    /// boot (or the sum over rounds), so they carry no sampling interval.
    static func counter(_ name: String, of result: BenchmarkResult) -> Double? {
        switch name {
        case "exits_per_op": return result.exits?.exitsPerOperation
        case "doorbells_per_op": return result.exits?.notificationsPerOperation
        case "interrupts_per_op": return result.exits?.interruptsPerOperation
        case "cause_reads_per_op": return result.exits?.interruptCauseReadsPerOperation
        case "guest_interrupts_per_op": return result.guestInterrupts?.takenPerOperation
        case "spurious_interrupts_per_op": return result.guestInterrupts?.spuriousPerOperation
        default: return nil
        }
    }

    static func metric(_ reference: Reference, in run: RunResults) -> Metric? {
        guard
            let result = run.results.first(where: {
                $0.system == reference.system && $0.benchmark == reference.benchmark && $0.status == .ok
            })
        else { return nil }
        if let found = result.metrics.first(where: { $0.name == reference.metric }) { return found }
        guard let value = counter(reference.metric, of: result) else { return nil }
        return Metric(MetricSamples(name: reference.metric, unit: "per operation", better: .lower, values: [value]))
    }

    public func evaluate(_ run: RunResults) -> ClaimVerdict {
        var verdict = judge(run)
        if let context, let numerator = Self.metric(context.numerator, in: run),
            let denominator = Self.metric(context.denominator, in: run), let (value, low, high) = numerator.ratio(to: denominator)
        {
            verdict.evidence +=
                "; context, not judged: \(context.numerator) / \(context.denominator.system) = \(formatted(value)) [95% CI \(formatted(low)), \(formatted(high))]"
        }
        return verdict
    }

    private func judge(_ run: RunResults) -> ClaimVerdict {
        func metric(_ reference: Reference) -> Metric? { Self.metric(reference, in: run) }
        func status(_ reference: Reference) -> String {
            guard let result = run.results.first(where: { $0.system == reference.system && $0.benchmark == reference.benchmark })
            else {
                return "no result for \(reference.system) \(reference.benchmark) in this run"
            }
            return
                "\(reference.system) \(reference.benchmark) is \(result.status.rawValue)\(result.reason.map { ": \($0)" } ?? "")"
        }
        let value: Double
        let low: Double
        let high: Double
        let what: String
        if let reference = check.value {
            guard let found = metric(reference) else {
                return ClaimVerdict(claim: self, outcome: .insufficientData, evidence: status(reference))
            }
            guard !found.samples.isEmpty else {
                return ClaimVerdict(claim: self, outcome: .insufficientData, evidence: "\(reference) has no samples")
            }
            let summary = Summary(found.replicates)
            (value, low, high) = (summary.median, summary.ci95Low, summary.ci95High)
            what = "median \(reference)"
        } else if let ratio = check.ratio {
            guard let numerator = metric(ratio.numerator) else {
                return ClaimVerdict(claim: self, outcome: .insufficientData, evidence: status(ratio.numerator))
            }
            guard let denominator = metric(ratio.denominator) else {
                return ClaimVerdict(claim: self, outcome: .insufficientData, evidence: status(ratio.denominator))
            }
            guard !numerator.samples.isEmpty, !denominator.samples.isEmpty else {
                let empty = numerator.samples.isEmpty ? ratio.numerator : ratio.denominator
                return ClaimVerdict(claim: self, outcome: .insufficientData, evidence: "\(empty) has no samples")
            }
            guard let interval = numerator.ratio(to: denominator) else {
                return ClaimVerdict(
                    claim: self, outcome: .insufficientData, evidence: "the ratio is undefined (zero denominator)")
            }
            (value, low, high) = interval
            what = "\(ratio.numerator) / \(ratio.denominator.system)"
        } else {
            return ClaimVerdict(claim: self, outcome: .insufficientData, evidence: "the claim has no check")
        }
        // Reproduced when the whole CI satisfies every bound, not reproduced when the whole CI
        // violates one, inconclusive when it straddles.
        var allInside = true
        var allOutside = false
        var bounds: [String] = []
        if let minimum = check.atLeast {
            bounds.append(">= \(formatted(minimum))")
            if low < minimum { allInside = false }
            if high < minimum { allOutside = true }
        }
        if let maximum = check.atMost {
            bounds.append("<= \(formatted(maximum))")
            if high > maximum { allInside = false }
            if low > maximum { allOutside = true }
        }
        let outcome: ClaimVerdict.Outcome = allInside ? .reproduced : allOutside ? .notReproduced : .inconclusive
        let evidence =
            "\(what) = \(formatted(value)) [95% CI \(formatted(low)), \(formatted(high))]; claim needs \(bounds.joined(separator: " and "))"
        return ClaimVerdict(claim: self, outcome: outcome, value: value, ci95Low: low, ci95High: high, evidence: evidence)
    }

    private func formatted(_ value: Double) -> String {
        abs(value) >= 100
            ? String(format: "%.0f", value) : abs(value) >= 1 ? String(format: "%.3g", value) : String(format: "%.3g", value)
    }
}
