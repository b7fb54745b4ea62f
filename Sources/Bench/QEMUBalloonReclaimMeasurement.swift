import Foundation
import Machine
import Results
import Synchronization

/// mem.balloon-reclaim under QEMU, on the same guest and driver: virtio-balloon-pci, driven as
/// libvirt drives it, through QMP's `balloon` (the guest's RAM size to reach) and
/// `query-balloon` (the size the driver's `actual` leaves). Residency is QEMU's whole resident
/// set (`process_rss`), read through the process at the other end of the QMP socket.
enum QEMUBalloonReclaimMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        system.isPeer && benchmark?.id == "mem.balloon-reclaim"
    }

    private struct QEMUBalloon: HostDrivenBalloon {
        let qmp: QMPClient
        let ramBytes: UInt64
        let refillCount: Counter?
        func refills() -> Int? { refillCount?.value }

        func request(pages: UInt32) async throws {
            try qmp.execute("balloon", arguments: ["value": ramBytes - UInt64(pages) * 4096])
        }

        func heldPages() async throws -> UInt32 {
            guard let info = try qmp.execute("query-balloon") as? [String: Any], let actual = info["actual"] as? NSNumber,
                actual.uint64Value <= ramBytes
            else { throw QMPClient.Failure(description: "query-balloon gave no usable 'actual'") }
            return UInt32((ramBytes - actual.uint64Value) / 4096)
        }

        func residentMebibytes() -> Double? {
            guard qmp.peerProcess > 0,
                let statm = try? String(contentsOfFile: "/proc/\(qmp.peerProcess)/statm", encoding: .utf8),
                let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
            else { return nil }
            return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
        }
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        guard let qemu = QEMUPeer.executable else { return .skipped("qemu-system-x86_64 is not installed") }
        guard case .qemu(let kvm, let devices) = context.system.runner else {
            return .failed("\(context.system.name) is not a QEMU peer")
        }
        let plan = context.plan
        var job = context.job()
        let balloon = QEMUPeer.deviceArguments(devices, nic: false, diskPath: nil, balloon: true, job: &job)
        let arguments =
            QEMUPeer.arguments(
                kvm: kvm, kernel: runner.artifacts.guestImage, commandLine: job.commandLine, memoryMiB: plan.vm.memoryMiB,
                vcpus: plan.vcpus(for: context.entry.id)) + balloon
        return await drive(
            qemu, arguments, memoryMiB: plan.vm.memoryMiB, context, by: runner, privilege: "cpl3", refillsSaid: true)
    }

    /// Runs QEMU with `arguments` (a guest with a virtio-balloon that says when it is ready) and
    /// drives its balloon through QMP, then stops it.
    static func drive(
        _ qemu: String, _ qemuArguments: [String], memoryMiB: Int, _ context: MeasurementContext, by runner: BenchmarkRunner,
        privilege: String, refillsSaid: Bool
    ) async -> MeasurementOutcome {
        let entry = context.entry
        let socket = FileManager.default.temporaryDirectory.appendingPathComponent(
            "hvbench-qmp-\(getpid())-\(UUID().uuidString.prefix(8)).sock"
        ).path
        defer { unlink(socket) }
        let arguments = qemuArguments + ["-qmp", "unix:\(socket),server=on,wait=off"]
        let ready = FirstLineClock()
        let refills = Counter()
        let stop = HostStopRequest()
        let process = Task {
            try await ProcessRunner.run(qemu, arguments, timeout: entry.timeoutSeconds, stop: stop) { line in
                if line.hasPrefix(BalloonReclaimMeasurement.readyLine) { ready.mark() }
                if line.hasPrefix(BalloonReclaim.refilledLine) { refills.increment() }
                runner.reportSamples(line)
            }
        }
        let limit = Date().addingTimeInterval(entry.timeoutSeconds / 2)
        while ready.nanoseconds == nil && Date() < limit { try? await Task.sleep(for: .milliseconds(10)) }
        var outcome: MeasurementOutcome = .failed("the guest did not offer its pages within \(Int(entry.timeoutSeconds / 2)) s")
        if ready.nanoseconds != nil {
            do {
                let qmp = try QMPClient(path: socket, seconds: 10)
                let timings = try await BalloonReclaim.run(
                    QEMUBalloon(qmp: qmp, ramBytes: UInt64(memoryMiB) << 20, refillCount: refillsSaid ? refills : nil),
                    pages: UInt32(entry.iterations),
                    warmups: entry.warmups, repetitions: entry.repetitions, limitSeconds: entry.timeoutSeconds / 4
                ) { runner.progress(.sample) }
                outcome = .measured(
                    timings.measurement(
                        pages: entry.iterations, residentName: "process_rss", privilege: privilege,
                        engine: context.expectedEngine))
            } catch {
                outcome = .failed("\(error)")
            }
        }
        stop.request()
        let output: ProcessRunner.Output
        do { output = try await process.value } catch { return .failed("QEMU: \(error)") }
        let console = output.standardOutput.joined(separator: "\n")
        context.log(
            "$ \(([qemu] + arguments).joined(separator: " "))\n\(console)\n\(output.standardError)\n# \(output.statusDescription)\n",
            by: runner)
        if let said = VMPairMeasurement.failure(in: output.standardOutput) { return .failed("the guest failed: \(said)") }
        return outcome
    }
}

/// A count kept by one thread and read by another.
final class Counter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
