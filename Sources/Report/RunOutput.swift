import Bench
import Foundation

/// Writes a run's files into its output folder, each atomically.
public enum RunOutput {
    public static func write(_ run: RunResults, to directory: URL) throws -> [URL] {
        let json = directory.appendingPathComponent("results.json")
        let csv = directory.appendingPathComponent("results.csv")
        try writeAtomically(try run.encoded(), to: json)
        try writeAtomically(try CSVReport.render(run), to: csv)
        return [json, csv]
    }
}
