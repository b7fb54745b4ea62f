import Foundation
import Report
import Testing

@testable import Results

@Suite struct CIExportTests {
    @Test func githubActionBenchmarkSplitsByDirection() throws {
        let run = storedRun(host: "h", index: 1)
        let smaller = try JSONSerialization.jsonObject(with: Data(CIExports.githubActionBenchmark(run, better: .lower).utf8))
        let bigger = try JSONSerialization.jsonObject(with: Data(CIExports.githubActionBenchmark(run, better: .higher).utf8))
        let lower = try #require(smaller as? [[String: Any]])
        let higher = try #require(bigger as? [[String: Any]])
        #expect(lower.map { $0["name"] as? String } == ["native/cpu.int/ns_per_op", "hardware-assist/cpu.int/ns_per_op"])
        #expect(higher.map { $0["name"] as? String } == ["native/cpu.int/throughput", "hardware-assist/cpu.int/throughput"])
        #expect(abs((lower[0]["value"] as? Double ?? 0) - 100) < 1e-9)
        #expect((lower[0]["unit"] as? String) == "ns")
        #expect((lower[0]["range"] as? String)?.hasPrefix("95% CI ") == true)
    }

    @Test func bencherMetricFormat() throws {
        let document = try #require(
            try JSONSerialization.jsonObject(with: Data(CIExports.bencher(storedRun(host: "h", index: 1)).utf8))
                as? [String: [String: [String: Double]]])
        let measure = try #require(document["native/cpu.int"]?["ns_per_op (ns)"])
        #expect(abs((measure["value"] ?? 0) - 100) < 1e-9)
        #expect((measure["lower_value"] ?? .infinity) <= 100 && (measure["upper_value"] ?? 0) >= 100)
        #expect(document["hardware-assist/cpu.syscall"] == nil)  // skipped results carry no figure
    }

    @Test func openMetricsIsWellFormed() {
        var run = storedRun(host: "h", index: 1)
        run.results[0].system = "odd\"name"
        let text = CIExports.openMetrics(run, host: "rack-1")
        let lines = text.split(separator: "\n")
        #expect(lines.last == "# EOF")
        #expect(text.contains("# TYPE hvbench_median gauge"))
        #expect(
            text.contains(
                "hvbench_median{host=\"rack-1\",system=\"odd\\\"name\",benchmark=\"cpu.int\",metric=\"ns_per_op\",unit=\"ns\"} 100\n"
            ))
        // Every sample line: a family, labels and one finite number.
        for line in lines where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            #expect(parts.count == 2 && Double(parts[1])?.isFinite == true, "\(line)")
        }
        let plain = CIExports.openMetrics(storedRun(host: "h", index: 1), host: "rack-1")
        #expect(plain.contains("hvbench_percent_of_native{host=\"rack-1\",system=\"hardware-assist\""))
    }
}

@Suite struct DashboardPageTests {
    /// A host whose newest three runs stepped 30% slower: the step is an alarm at the top, a
    /// change point on the chart, and every point links to its run.
    @Test func aHostPageShowsTheStepAndLinksEveryRun() {
        let runs = (1...9).map { index in
            DashboardPages.Run(id: Int64(index), results: storedRun(host: "a", index: index, level: index > 6 ? 130 : 100))
        }
        let page = DashboardPages.host("a", runs: runs)
        #expect(page.contains("class=\"alarm\">native cpu.int"), "\(page.prefix(1500))")
        #expect(page.contains("change-point"))
        for id in 1...9 { #expect(page.contains("href=\"/runs/\(id)\"")) }
        #expect(page.contains("<th>% of native</th>"))
        #expect(page.contains("<td>83.3%</td>"))  // hardware-assist at 1.2x native's time
        let flat = DashboardPages.host(
            "b", runs: (1...9).map { DashboardPages.Run(id: Int64($0), results: storedRun(host: "b", index: $0)) })
        #expect(!flat.contains("class=\"alarm\""))
        let index = DashboardPages.index(hosts: [("a", 9, "2026"), ("b c", 1, nil)], store: "sqlite:x")
        #expect(index.contains("href=\"/hosts/a\"") && index.contains("href=\"/hosts/b%20c\""))
    }

    /// The report's noisy results: one sentence with counts per system, not a list of every metric.
    @Test func noisyResultsAreSummarised() {
        var run = storedRun(host: "a", index: 1)
        for index in 0..<2 {
            run.results[index].metrics[0] = Metric(
                MetricSamples(name: "throughput", unit: "Mops/s", better: .higher, values: [1, 2, 3]), roundValues: [1, 2, 3])
        }
        let markdown = MarkdownReport.render(run)
        #expect(markdown.contains("2 of 2 results are noisy (CV above 5%)"), "\(markdown.prefix(1200))")
        #expect(markdown.contains("hardware-assist 1, native 1"))
        #expect(HTMLReport.render(run).contains("title=\"noisy: CV"))
    }
}
