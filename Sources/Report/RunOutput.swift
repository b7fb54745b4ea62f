import Results
import Foundation

/// Writes a run's files into its output folder, each atomically.
public enum RunOutput {
    /// results.json, results.csv, summary.md and report.html. Used by `run` and `report`
    /// alike, so re-rendering saved results gives the same files.
    /// - Parameter claims: published claims to judge against this run (shown in both reports).
    public static func write(_ run: RunResults, to directory: URL, claims: [Claim] = []) throws -> [URL] {
        var run = run
        run.derived = run.derivedFigures()
        let verdicts = claims.map { $0.evaluate(run) }
        let files: [(String, Data)] = [
            ("results.json", try run.encoded()),
            ("results.csv", try CSVReport.render(run)),
            ("summary.md", Data((MarkdownReport.render(run) + ClaimsOutput.markdown(verdicts)).utf8)),
            ("report.html", Data(HTMLReport.render(run, claims: verdicts).utf8)),
        ]
        return try files.map { name, data in
            let url = directory.appendingPathComponent(name)
            try writeAtomically(data, to: url)
            return url
        }
    }
}
