import Results
import Foundation
import Report

/// Guest console output: any bytes. A transcript that parses as ok must have produced only
/// finite metrics, because those become statistics and results files.
enum ResultLineFuzz {
    static func run(_ bytes: [UInt8]) -> FuzzProperty {
        let console = String(decoding: bytes, as: UTF8.self)
        for line in console.split(whereSeparator: \.isNewline) { _ = try? ResultLine.parse(String(line)) }
        for bench in ["cpu.int", "cpu.pio", "vm.boot"] {
            guard let transcript = try? BenchmarkTranscript.parse(console: console, bench: bench) else { continue }
            guard case .ok = transcript.status else { continue }
            if transcript.samples.contains(where: { $0.operations == 0 || $0.cycles == 0 }) {
                return "an ok transcript holds a sample with zero operations or cycles"
            }
            if transcript.latency.operations > LatencyBuckets.maximumOperations {
                return "a histogram passed its operation limit"
            }
            for metric in MetricDerivation.metrics(for: bench, samples: transcript.samples, tscHertz: 2e9)
            where metric.values.contains(where: { !$0.isFinite }) {
                return "\(metric.name) is not finite for an ok transcript"
            }
        }
        return nil
    }
}

/// Suite YAML: any text. A suite that loads holds only values inside `Limits`.
enum SuiteYAMLFuzz {
    static func run(_ bytes: [UInt8]) -> FuzzProperty {
        guard let suite = try? Suite.parse(String(decoding: bytes, as: UTF8.self), file: "fuzz.yaml") else { return nil }
        for entry in suite.entries {
            if !Limits.iterations.contains(entry.iterations) || !Limits.repetitions.contains(entry.repetitions)
                || !Limits.warmups.contains(entry.warmups) || !Limits.timeoutSeconds.contains(entry.timeoutSeconds)
                || !(entry.sizeBytes.map(Limits.sizeBytes.contains) ?? true)
            {
                return "suite entry \(entry.id) is out of range: \(entry)"
            }
        }
        return nil
    }
}

/// results.json: any bytes. A file that loads renders in every format, and what hvbench then
/// writes it reads back.
enum ResultsJSONFuzz {
    static func run(_ bytes: [UInt8]) -> FuzzProperty {
        guard var run = try? RunResults.decode(Data(bytes), source: "fuzz.json") else { return nil }
        run.derived = run.derivedFigures()
        _ = TableReport.render(run)
        _ = MarkdownReport.render(run)
        _ = HTMLReport.render(run)
        guard (try? CSVReport.render(run)) != nil else { return "results that load do not render as CSV" }
        guard let written = try? run.encoded() else { return "results that load cannot be written" }
        do { _ = try RunResults.decode(written, source: "rewritten.json") } catch {
            return "hvbench wrote a results file it cannot read: \(error)"
        }
        return nil
    }
}
