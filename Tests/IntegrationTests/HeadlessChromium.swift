import Foundation
import Testing

@testable import Bench
import Results

/// Chromium without a window, as the report and dashboard tests drive it: a page's DOM after
/// its scripts ran, the counts the page script records, and a screenshot kept for people.
enum HeadlessChromium {
    static let executable: String? = ["chromium", "chromium-browser", "google-chrome"].lazy.compactMap {
        ProcessRunner.find($0)
    }.first

    static let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,2400"]

    /// The page's DOM as text, and Chromium's stderr.
    static func dom(_ page: String) async throws -> (text: String, standardError: String) {
        let output = try await ProcessRunner.run(try #require(executable), flags + ["--dump-dom", page], timeout: 300)
        return (output.standardOutput.joined(separator: "\n"), output.standardError)
    }

    /// A number the page script wrote into an attribute of <body> (`data-charts-drawn`, …); nil
    /// when the script did not run.
    static func attribute(_ name: String, in dom: String) -> Int? {
        guard let range = dom.range(of: "\(name)=\"") else { return nil }
        return Int(dom[range.upperBound...].prefix { $0.isNumber })
    }

    /// A PNG of the page, kept as .build/test-output/NAME for people to look at.
    static func screenshot(_ page: String, named name: String) async throws -> Data {
        let folder = try Workspace.locate().root.appendingPathComponent(".build/test-output")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let file = folder.appendingPathComponent(name)
        try? FileManager.default.removeItem(at: file)
        _ = try await ProcessRunner.run(try #require(executable), flags + ["--screenshot=\(file.path)", page], timeout: 300)
        return try Data(contentsOf: file)
    }
}
