import Foundation
import Machine
import Results

/// mem.page-sharing under QEMU with KVM: the same guests in `--sharing-vms` QEMU processes,
/// whose RAM QEMU offers to KSM itself (`mem-merge`, on by default); what merges and how fast is
/// measured as for hvbench's VMs. The copy-on-write breaks are not: hvbench tells its own
/// guests when to break by writing into their RAM, which it cannot do in QEMU's, so the QEMU
/// processes are stopped once merging has levelled off. Under TCG it is skipped: QEMU's TCG
/// CPU has no TSC-deadline timer, so its waiting guests would spin beside ksmd.
enum QEMUPageSharingMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        system.isPeer && benchmark?.id == "mem.page-sharing"
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        guard let qemu = QEMUPeer.executable else { return .skipped("qemu-system-x86_64 is not installed") }
        guard case .qemu(let kvm, _) = context.system.runner else { return .failed("\(context.system.name) is not a QEMU peer") }
        guard kvm else {
            return .skipped("QEMU's TCG CPU has no TSC-deadline timer: its guests would spin beside ksmd while they wait")
        }
        let ksm: KernelSamePageMerging
        do { ksm = try KernelSamePageMerging.start() } catch { return .skipped("needs the host's KSM: \(error)") }
        defer { ksm.restore() }
        await ksm.settle()
        let baseline = ksm.pagesSharing ?? 0
        let (entry, plan) = (context.entry, context.plan)
        let job = context.job(repetitions: 1, warmups: 0)
        let arguments =
            QEMUPeer.arguments(
                kvm: kvm, kernel: runner.artifacts.guestImage, commandLine: job.commandLine, memoryMiB: plan.vm.memoryMiB,
                vcpus: plan.vcpus(for: entry.id)) + ["-machine", "mem-merge=on"]
        let count = plan.vm.sharingVMs
        let ready = (0..<count).map { _ in FirstLineClock() }
        let stops = (0..<count).map { _ in HostStopRequest() }
        let processes = (0..<count).map { index in
            Task {
                try await ProcessRunner.run(qemu, arguments, timeout: entry.timeoutSeconds, stop: stops[index]) { line in
                    if line.hasPrefix("hvbench-guest: page-sharing ") { ready[index].mark() }
                }
            }
        }
        let limit = Date().addingTimeInterval(entry.timeoutSeconds / 2)
        while ready.contains(where: { $0.nanoseconds == nil }) && Date() < limit {
            try? await Task.sleep(for: .milliseconds(10))
        }
        var log = "$ \(([qemu] + arguments).joined(separator: " "))  (\(count) processes, \(ksm.settings))\n"
        var merged: (saved: [Double], milliseconds: [Double])?
        if ready.allSatisfy({ $0.nanoseconds != nil }) {
            merged = await PageSharingMeasurement.sampleMerging(ksm, baseline: baseline, until: limit, log: &log)
        }
        stops.forEach { $0.request() }
        for (index, process) in processes.enumerated() {
            let output = try? await process.value
            log +=
                "# QEMU \(index + 1): \(output?.statusDescription ?? "did not run")\n"
                + (output?.standardOutput.joined(separator: "\n") ?? "") + "\n"
            if let said = output.flatMap({ VMPairMeasurement.failure(in: $0.standardOutput) }) {
                context.log(log, by: runner)
                return .failed("QEMU \(index + 1)'s guest failed: \(said)")
            }
        }
        context.log(log, by: runner)
        guard let merged, !merged.saved.isEmpty else {
            return .failed("not every QEMU guest filled its pages within \(Int(entry.timeoutSeconds / 2)) s")
        }
        runner.progress(.sample)
        return .measured(
            Measurement(
                metrics: PageSharingMeasurement.mergeMetrics(merged, pages: entry.iterations, vms: count), tscHertz: 1,
                privilege: "cpl3", engine: context.expectedEngine))
    }
}
