import Foundation
import Testing

@testable import Results
@testable import Report

@Suite struct MeasurementDisciplineTests {
    @Test func outliersAreFlaggedNotDropped() {
        let summary = Summary([10, 10.1, 9.9, 10.05, 9.95, 30])
        #expect(summary.outliers == [5])
        #expect(summary.max == 30)  // still there
        #expect(summary.median == 10.025)
    }

    @Test func noisyMeansCVAboveFivePercent() {
        #expect(!Summary([100, 101, 99, 100]).noisy)
        #expect(Summary([100, 120, 80, 100]).noisy)
    }

    @Test func latencyBucketsRoundTripThroughTheGuestEncoding() throws {
        // Mirror of the guest's bucket_of(): below 16 exact, then 16 sub-buckets per power of two.
        func bucket(_ cycles: UInt64) -> Int {
            if cycles < 16 { return Int(cycles) }
            let exponent = 63 - cycles.leadingZeroBitCount
            return 16 + (exponent - 4) * 16 + Int((cycles >> (exponent - 4)) & 15)
        }
        for cycles: UInt64 in [0, 7, 15, 16, 17, 100, 1000, 44_000, 1 << 40, UInt64.max] {
            let representative = LatencyBuckets.representativeCycles(bucket(cycles))
            #expect(abs(representative - Double(cycles)) <= max(0.5, Double(cycles) * 0.0625), "\(cycles) -> \(representative)")
        }
        #expect(bucket(UInt64.max) == LatencyBuckets.highestIndex)
    }

    @Test func percentilesComeFromTheHistogram() throws {
        var transcript = try BenchmarkTranscript.parse(
            console: """
                HVB1 begin bench=cpu.pio cpl=3 iterations=10 repetitions=1 warmups=0
                HVB1 sample bench=cpu.pio rep=0 ops=10 cycles=1000 bytes=0
                HVB1 hist bench=cpu.pio buckets=100:90,200:9
                HVB1 hist bench=cpu.pio buckets=300:1
                HVB1 end bench=cpu.pio
                HVB1 done
                """, bench: "cpu.pio")
        #expect(transcript.latency.operations == 100)
        var summary = Summary([1])
        summary.addLatencyPercentiles(transcript.latency, tscHertz: 1e9)  // 1 cycle = 1 ns
        let p50 = LatencyBuckets.representativeCycles(100)
        #expect(abs(summary.p50! - p50) / p50 < 0.01)
        #expect(summary.p99! > summary.p90! && summary.p999! >= summary.p99!)
        #expect(summary.latencyOperations == 100)
        transcript.latency = LatencyBuckets()
        #expect(throws: ResultLine.ParseError.self) { try ResultLine.parse("HVB1 hist bench=cpu.pio buckets=5000:1") }
        #expect(throws: ResultLine.ParseError.self) { try ResultLine.parse("HVB1 hist bench=cpu.pio buckets=12:0") }
        #expect(throws: ResultLine.ParseError.self) { try ResultLine.parse("HVB1 hist bench=cpu.pio buckets=12") }
    }

    @Test func ratioIntervalsBracketTheRatio() throws {
        let a = [200.0, 210, 190, 205, 195]
        let b = [100.0, 101, 99, 100, 100]
        let ratio = try #require(Summary.ratioInterval(a, b))
        #expect(ratio.ratio == 2)
        #expect(ratio.low <= 2 && ratio.high >= 2 && ratio.low > 1.8 && ratio.high < 2.2)
    }
}

@Suite struct DerivedFigureTests {
    @Test func percentOfNativeAndModeRatios() throws {
        var run = sampleRun()
        run.results.append(
            BenchmarkResult(
                system: "full-emulation", benchmark: "cpu.cpuid", status: .ok,
                metrics: [Metric(MetricSamples(name: "ns_per_op", unit: "ns", better: .lower, values: [800, 820, 780]))]))
        let figures = run.derivedFigures()
        let percent = try #require(figures.first { $0.kind == .percentOfNative && $0.numerator == "hardware-assist" })
        #expect(abs(percent.value - 25) < 0.01)
        #expect(percent.ci95Low <= percent.value && percent.value <= percent.ci95High)
        let speedup = try #require(figures.first { $0.kind == .speedup })
        #expect(speedup.numerator == "hardware-assist" && speedup.denominator == "full-emulation")
        #expect(abs(speedup.value - 2) < 0.01)  // 400 ns vs 800 ns: twice as fast
    }

    @Test func runsOfOneHostWithDifferentBenchmarksCombine() {
        var other = sampleRun()
        other.suite = "net"
        other.results = other.results.map {
            var result = $0
            result.benchmark = "net." + result.benchmark  // other benchmarks, no pair repeats
            return result
        }
        let merged = RunResults.merge([sampleRun(), other])
        #expect(merged.hosts == nil)
        #expect(merged.results.count == 6)
        #expect(merged.suite == "net+quick")
        #expect(merged.results.allSatisfy { !$0.system.contains("/") })
    }

    @Test func mergedRunsCompareOnlyWithinAHost() throws {
        let merged = RunResults.merge([sampleRun(), sampleRun()])
        let hosts = try #require(merged.hosts)
        #expect(hosts.count == 2)
        #expect(merged.results.count == 6)
        #expect(Set(merged.results.map(\.system)).count == 4)
        let figures = merged.derivedFigures().filter { $0.kind == .percentOfNative }
        #expect(figures.count == 2)
        for figure in figures {
            #expect(figure.numerator.split(separator: "/")[0] == figure.denominator.split(separator: "/")[0])
        }
    }
}

@Suite struct RenderedReportTests {
    @Test func markdownHasTheTableAndTheWarnings() {
        var run = sampleRun()
        run.environment.kvm.softwareAssisted = true
        run.environment.kvm.usable = true
        let markdown = MarkdownReport.render(run)
        #expect(markdown.contains("| `cpu.cpuid` | ns_per_op (ns, lower is better) | 100 ±"))
        #expect(markdown.contains("25.0% ["))
        #expect(markdown.contains("software-assisted"))
        #expect(markdown.contains("skipped"))
    }

    @Test func htmlIsSelfContainedWithChartsAndErrorBars() {
        let html = HTMLReport.render(sampleRun())
        #expect(html.hasPrefix("<!doctype html>"))
        #expect(
            !html.contains("http://")
                || html.components(separatedBy: "http://").count
                    == html.components(separatedBy: "http://www.w3.org/2000/svg").count
        )
        #expect(!html.contains("<link") && !html.contains("src="))
        #expect(html.contains("<svg"))
        #expect(html.components(separatedBy: "class=\"bar\"").count - 1 >= 2)
        #expect(html.contains("class=\"ci\""))
        #expect(html.contains("% of native"))
        #expect(html.contains("<section id=\"environment\">"))
    }

    @Test func logScaleWhenValuesSpanDecades() {
        #expect(ValueAxis(values: [100, 40_000]).logarithmic)
        #expect(!ValueAxis(values: [300, 340]).logarithmic)
        let axis = ValueAxis(values: [150, 40_000])
        #expect(axis.low == 100 && axis.high == 100_000)
        #expect(axis.ticks == [100, 1000, 10_000, 100_000])
        #expect(ValueAxis.niceCeiling(7.3) == 10 && ValueAxis.niceCeiling(1.2) == 2 && ValueAxis.niceCeiling(420) == 500)
    }

    @Test func textIsEscaped() {
        #expect(escapeXML("<a href=\"x\">&'") == "&lt;a href=&quot;x&quot;&gt;&amp;&#39;")
    }
}

@Suite struct DriverComparisonTests {
    @Test func pollingAndInterruptDrivenVariantsAreShownSideBySideWithTheirCounters() {
        var results = run(["paravirt-io": [100, 101, 99]], benchmark: "net.rr")
        var interrupt = run(["paravirt-io": [150, 149, 151], "qemu-kvm-virtio": [80, 81, 79]], benchmark: "net.rr-irq").results
        var counters = ExitCounters()
        counters.mmio = 300
        counters.operations = 100
        counters.interrupts = 100
        counters.interruptCauseReads = 0
        interrupt[0].exits = counters
        interrupt[0].guestInterrupts = GuestInterruptCounts(taken: 100, spurious: 0, operations: 100)
        results.results += interrupt
        let markdown = MarkdownReport.render(results)
        #expect(markdown.contains("### Polling vs interrupt-driven drivers"))
        #expect(
            markdown.contains("| paravirt-io | `net.rr` | ns_per_op (x) | 100 | 150 | 0.67× | - / - / - / - | 3 / 1 / 0 / 0 |"),
            "\(markdown)")
        #expect(!markdown.contains("| qemu-kvm-virtio | `net.rr`"), "no polling result for QEMU: no row")
        #expect(HTMLReport.render(results).contains("<section id=\"drivers\">"))
        #expect(!MarkdownReport.render(run(["paravirt-io": [1, 2, 3]])).contains("Polling vs"))
    }
}

@Suite struct LinuxDeviceCountersTests {
    /// The Linux guest's network and disk jobs get a table of the VMM's counters per operation;
    /// systems that record none (QEMU, native) and the other Linux jobs do not.
    @Test func linuxJobsShowTheirDevicesCountersPerOperation() {
        var results = run(["full-emulation": [700, 710, 690], "qemu-tcg": [500, 510, 490]], benchmark: "linux.udp-rr")
        var e1000 = ExitCounters()
        e1000.mmio = 800
        e1000.portIO = 40
        e1000.notifications = 100
        e1000.interrupts = 200
        e1000.interruptCauseReads = 200
        e1000.operations = 100
        results.results[results.results.firstIndex { $0.system == "full-emulation" }!].exits = e1000
        var other = run(["full-emulation": [10, 11, 9]], benchmark: "linux.null-syscall").results
        other[0].exits = e1000
        results.results += other
        let markdown = MarkdownReport.render(results)
        #expect(markdown.contains("### Linux's drivers on the device models"))
        #expect(markdown.contains("| full-emulation | `linux.udp-rr` | ns_per_op (x) | 700 | 8.4 | 1 | 2 | 2 |"), "\(markdown)")
        #expect(!markdown.contains("| qemu-tcg | `linux.udp-rr`"), "QEMU records no exits: no row")
        #expect(!markdown.contains("| full-emulation | `linux.null-syscall`"), "not a device job")
        #expect(HTMLReport.render(results).contains("<section id=\"linux-devices\">"))
    }
}
