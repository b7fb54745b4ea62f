import Foundation
import Testing

@testable import Bench
import Results

/// Reports from real runs: re-rendering, and the HTML in a real browser.
@Suite struct ReportIntegrationTests {
    func hvbench(_ arguments: [String]) async throws -> ProcessRunner.Output {
        let executable = try #require(CommandLineTests.executable, "the hvbench executable must be built next to the tests")
        return try await ProcessRunner.run(executable, arguments, timeout: 300)
    }

    func smallRun(into directory: URL) async throws {
        let output = try await hvbench([
            "run", "--mode", "all", "--bench", "cpu.int", "--bench", "cpu.pio", "--bench", "cpu.cpuid", "--bench", "vm.boot",
            "--iterations", "50", "--repetitions", "3", "--out", directory.path,
        ])
        #expect(output.exitCode == 0, "\(output.standardError)")
    }

    @Test func reportReRendersTheSameFiles() async throws {
        let run = temporaryDirectory()
        let rendered = temporaryDirectory()
        defer {
            try? FileManager.default.removeItem(at: run)
            try? FileManager.default.removeItem(at: rendered)
        }
        try await smallRun(into: run)
        let report = try await hvbench(["report", run.path, "--out", rendered.path])
        #expect(report.exitCode == 0, "\(report.standardError)")
        for file in ["results.json", "results.csv", "summary.md", "report.html"] {
            let original = try Data(contentsOf: run.appendingPathComponent(file))
            let again = try Data(contentsOf: rendered.appendingPathComponent(file))
            #expect(original == again, "\(file) differs after re-rendering")
        }
        let garbage = run.appendingPathComponent("garbage.json")
        try Data("{not json".utf8).write(to: garbage)
        let bad = try await hvbench(["report", garbage.path, "--out", rendered.path])
        #expect(bad.exitCode == 2)
        #expect(bad.standardError.contains("not a hvbench results file"))
    }

    @Test(.enabled(if: HeadlessChromium.executable != nil, "needs Chromium for headless rendering (Debian package chromium)"))
    func reportDrawsChartsInAHeadlessBrowser() async throws {
        let run = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: run) }
        try await smallRun(into: run)
        let page = run.appendingPathComponent("report.html").absoluteString
        let dom = try await HeadlessChromium.dom(page)
        let charts = try #require(
            HeadlessChromium.attribute("data-charts-drawn", in: dom.text), "the page script did not run:\n\(dom.standardError)")
        let bars = try #require(HeadlessChromium.attribute("data-bars-drawn", in: dom.text))
        #expect(charts >= 3)
        #expect(bars >= 4)
        // A screenshot for people to look at, kept with the test output.
        let png = try await HeadlessChromium.screenshot(page, named: "report.png")
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        #expect(png.count > 20_000)  // a blank page compresses to a few kB
    }
}
