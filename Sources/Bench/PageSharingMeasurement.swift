import Foundation
import Machine
import Results
import Synchronization
import VMM

/// mem.page-sharing: `--sharing-vms` VMs of one system boot with the same job, their RAM
/// offered to KSM. Each guest fills a region with content they all share and says where its
/// mailbox is; the host samples the memory KSM saves (`pages_sharing`) until merging levels off
/// (no growth over two of ksmd's full scans, or the time limit), then writes each mailbox in
/// turn (ksmd stopped, what it merged kept), and that guest writes once to every shared page (one copy-on-write break each), times
/// it and ends before the next is told.
///
/// Metrics: `saved` (MiB the host no longer holds), `saved_share` (of the pages that could be
/// saved: all but one VM's copy of the region), `merge_time` (ms from every guest ready until
/// 90% of what was saved), and `cow_break` (ns per page, one sample per VM).
enum PageSharingMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        GuestMeasurement.measures(system, benchmark) && benchmark?.id == "mem.page-sharing"
    }

    /// How often the host looks at what KSM saved.
    static let sampleInterval = Duration.milliseconds(50)

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        guard let cpu = context.cpu else { return .failed("\(context.system.name) is not one of hvbench's VMs") }
        let ksm: KernelSamePageMerging
        do { ksm = try KernelSamePageMerging.start() } catch { return .skipped("needs the host's KSM: \(error)") }
        defer { ksm.restore() }
        let entry = context.entry
        // Each guest breaks its shared pages once: one repetition a VM, whatever the suite says.
        var once = entry
        (once.repetitions, once.warmups) = (1, 0)
        let context = MeasurementContext(
            entry: once, plan: context.plan, system: context.system, guestImage: context.guestImage, kvm: context.kvm,
            kvmProblem: context.kvmProblem)
        let job = context.job()
        let guests = (0..<context.plan.vm.sharingVMs).map { _ in HostDrivenGuest(readyLine: "hvbench-guest: page-sharing ") }
        await ksm.settle()
        let baseline = ksm.pagesSharing ?? 0
        for (index, guest) in guests.enumerated() {
            guest.boot(context, job, cpu: cpu, io: nil, by: runner, thread: "hvb-share-\(index)") { memory in
                try memory.offerToPageSharing()
            }
        }
        let limit = Date().addingTimeInterval(entry.timeoutSeconds / 2)
        while !guests.allSatisfy(\.isReadyOrEnded) && Date() < limit {
            try? await Task.sleep(for: sampleInterval)
        }
        var log = "# \(guests.count) VMs, \(ksm.settings)\n"
        var merged: (saved: [Double], milliseconds: [Double])?
        if guests.allSatisfy(\.isReady) {
            merged = await sampleMerging(ksm, baseline: baseline, until: limit, log: &log)
        }
        // One guest at a time breaks its pages, so a break is not timed while another VM's runs
        // beside it on the host's CPUs (the rest sleep, waking each millisecond to look).
        if merged == nil { guests.forEach { $0.release() } }
        ksm.stopScanning()
        var problems: [String] = []
        var cowCycles: [(cycles: Double, tscHertz: Double)] = []
        var engine = context.expectedEngine
        for (index, guest) in guests.enumerated() {
            guest.release()
            switch guest.waitUntilEnded() {
            case .failure(let problem): problems.append("VM \(index + 1): \(problem)")
            case .success(let boot):
                engine = boot.engineName
                switch runner.readMeasuredVM(context, job, boot) {
                case .measured(let measurement):
                    let perPage = measurement.metrics.first { $0.name == "cycles_per_op" }?.values.first
                    if let perPage { cowCycles.append((perPage, measurement.tscHertz)) }
                case .failed(let reason): problems.append("VM \(index + 1): \(reason)")
                case .skipped(let reason): return .skipped(reason)
                }
            }
        }
        context.log(log, by: runner)
        if let problem = problems.first { return .failed(problem) }
        guard let merged, !merged.saved.isEmpty else {
            return .failed("not every VM said where its mailbox is within \(Int(entry.timeoutSeconds / 2)) s")
        }
        let metrics =
            mergeMetrics(merged, pages: entry.iterations, vms: guests.count) + [
                MetricSamples(
                    name: "cow_break", unit: "ns", better: .lower, values: cowCycles.map { $0.cycles / $0.tscHertz * 1e9 })
            ]
        return .measured(Measurement(metrics: metrics, tscHertz: cowCycles.first?.tscHertz ?? 1, engine: engine))
    }

    /// What merged, as metrics: MiB saved, its share of what `vms` copies of `pages` pages could
    /// save, and the time to 90% of it.
    static func mergeMetrics(_ merged: (saved: [Double], milliseconds: [Double]), pages: UInt64, vms: Int) -> [MetricSamples] {
        let shareable = Double(pages) * Double(vms - 1) * 4096 / 1_048_576
        let saved = merged.saved.last ?? 0
        return [
            MetricSamples(name: "saved", unit: "MiB", better: .higher, values: [saved]),
            MetricSamples(name: "saved_share", unit: "%", better: .higher, values: [min(saved / shareable, 1) * 100]),
            MetricSamples(
                name: "merge_time", unit: "ms", better: .lower,
                values: [merged.milliseconds[merged.saved.firstIndex { $0 >= 0.9 * saved } ?? 0]]),
        ]
    }

    /// What KSM saved (MiB) and when (ms since every guest was ready), until two full scans
    /// pass without growth or the limit; each sample also goes to the log.
    static func sampleMerging(
        _ ksm: KernelSamePageMerging, baseline: Int, until limit: Date, log: inout String
    ) async -> (saved: [Double], milliseconds: [Double]) {
        let start = Date()
        var saved: [Double] = []
        var milliseconds: [Double] = []
        var scansAtLastGrowth = ksm.fullScans ?? 0
        while Date() < limit {
            try? await Task.sleep(for: sampleInterval)
            let mebibytes = Double(max((ksm.pagesSharing ?? 0) - baseline, 0)) * 4096 / 1_048_576
            let scans = ksm.fullScans ?? 0
            // Growth is more than a page cache's worth of jitter: 1% or 64 pages.
            if mebibytes > (saved.max() ?? 0) * 1.01 + 0.25 { scansAtLastGrowth = scans }
            saved.append(mebibytes)
            milliseconds.append(Date().timeIntervalSince(start) * 1000)
            log += String(format: "# %8.0f ms  saved %8.2f MiB  full scans %d\n", milliseconds.last!, mebibytes, scans)
            if mebibytes > 0 && scans >= scansAtLastGrowth + 2 { break }
        }
        return (saved, milliseconds)
    }
}
