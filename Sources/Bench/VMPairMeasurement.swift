import Foundation
import Machine
import Results
import Synchronization
import VMM

/// VM-to-VM rounds: two VMs of the same mode on a Linux bridge in the run's namespace. The
/// serving VM (an echo, or a stream source) boots first; once its guest says it is serving,
/// the measured VM runs the benchmark against it; then hvbench stops the serving VM. Only the
/// measured VM's samples and exits count; the serving guest checks every datagram too, and a
/// bad one, or a serving VM that ended on its own, fails the round.
enum VMPairMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        GuestMeasurement.measures(system, benchmark) && benchmark?.vmToVM == true
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        guard context.plan.network.backend == .tap else {
            return .skipped("VM to VM runs over the TAP backend's bridge; --net-backend vmm has no second VM")
        }
        let entry = context.entry
        guard let cpu = context.cpu, let devices = context.system.devices, let role = context.benchmark?.peerRole else {
            return .failed("\(entry.id) needs a NIC and a serving role")
        }
        let link: VMPairLink
        do { link = try VMPairLink() } catch { return .skipped("the TAP backend is unavailable here: \(error)") }
        defer { link.close() }
        var measuredJob = context.job()
        measuredJob.nic = devices.guestNIC
        measuredJob.udp = VMPairLink.measuredEndpoints
        let serving = ServingVM()
        let stop = HostStopRequest()
        let start = ServingStart(
            context: context, job: VMPairLink.servingJob(role, for: measuredJob), cpu: cpu,
            io: context.plan.vm.io(devices, disk: nil, peer: link.serving))
        let thread = Thread {
            serving.finish(
                runner.bootGuest(
                    start.context, start.job, cpu: start.cpu, io: start.io,
                    timeout: start.context.entry.timeoutSeconds + servingGrace, hostStop: stop,
                    onConsoleLine: { if isServingOrFailed($0) { serving.markReady() } }))
        }
        thread.name = "hvbench-serving-vm"
        thread.start()
        // The measured guest starts once the other is serving: a request sent earlier is lost.
        let ready = serving.waitUntilReady(seconds: entry.timeoutSeconds)
        var outcome: MeasurementOutcome = .failed(
            "the serving VM did not start serving within \(Int(entry.timeoutSeconds)) s")
        var measured: VMBuilder.Boot?
        if ready && !serving.hasEnded {
            switch runner.bootGuest(
                context, measuredJob, cpu: cpu, io: context.plan.vm.io(devices, disk: nil, peer: link.measured))
            {
            case .success(let boot):
                measured = boot
                outcome = runner.readMeasuredVM(context, measuredJob, boot)
            case .failure(let problem): outcome = .failed(problem.description)
            }
        }
        stop.request()
        let servingEnd = serving.waitUntilEnded()
        context.log(servingLog(start.job, servingEnd) + "# \(link.summary)\n", by: runner, part: ".serving")
        if let problem = servingProblem(servingEnd) {
            if case .measured = outcome { return .failed(problem) }
            if case .failed(let reason) = outcome { return .failed("\(reason); \(problem)") }
        }
        guard case .measured(var measurement) = outcome, let measured else { return outcome }
        measurement.exits = GuestMeasurement.exitCounters(entry, measured, measurement)
        return .measured(measurement)
    }

    /// Whether a serving guest's console line says it serves, or that it failed.
    static func isServingOrFailed(_ line: String) -> Bool {
        switch try? ResultLine.parse(line) {
        case .serving?, .fail?: return true
        default: return false
        }
    }

    /// The failure a serving guest reported on its console, if any.
    static func failure(in console: some Sequence<some StringProtocol>) -> String? {
        for line in console {
            if case .fail(_, let reason)? = try? ResultLine.parse(String(line)) { return reason }
        }
        return nil
    }

    /// How much longer than the measured VM the serving one may run before its own watchdog.
    static let servingGrace = 60.0

    private static func servingLog(_ job: GuestJob, _ end: Result<VMBuilder.Boot, BenchmarkRunner.StartProblem>)
        -> String
    {
        switch end {
        case .success(let boot):
            return "# cmdline: \(job.commandLine)\n\(boot.console)\n# \(boot.outcome.ending.summary)\n"
                + boot.brokenDevices.map { "# device error: \($0)\n" }.joined()
        case .failure(let problem): return "# \(problem)\n"
        }
    }

    /// Why the serving VM spoils the round, or nil when it served until it was stopped.
    private static func servingProblem(_ end: Result<VMBuilder.Boot, BenchmarkRunner.StartProblem>) -> String? {
        switch end {
        case .failure(let problem): return "the serving VM: \(problem)"
        case .success(let boot):
            if let broken = boot.brokenDevices.first { return "the serving VM's device error: \(broken)" }
            if let said = failure(in: boot.console.split(separator: "\n")) { return "the serving guest failed: \(said)" }
            guard boot.outcome.ending == .stoppedByHost else {
                return "the serving VM ended before it was stopped: \(boot.outcome.ending.summary)"
            }
            return nil
        }
    }
}

/// What the serving VM's thread boots with. Unchecked: the round waits for that thread to end
/// before it lets go of the engine's system or the link's backend.
private struct ServingStart: @unchecked Sendable {
    let context: MeasurementContext
    let job: GuestJob
    let cpu: VMBuilder.CPU
    let io: IOConfiguration
}

/// The serving VM's state, shared between its thread and the round.
private final class ServingVM: Sendable {
    private let readiness = DispatchSemaphore(value: 0)
    private let ended = DispatchSemaphore(value: 0)
    private let result = Mutex<Result<VMBuilder.Boot, BenchmarkRunner.StartProblem>?>(nil)

    func markReady() { readiness.signal() }

    func finish(_ outcome: Result<VMBuilder.Boot, BenchmarkRunner.StartProblem>) {
        result.withLock { $0 = outcome }
        readiness.signal()  // a VM that never got to serving must not keep the round waiting
        ended.signal()
    }

    var hasEnded: Bool { result.withLock { $0 != nil } }

    func waitUntilReady(seconds: Double) -> Bool { readiness.wait(timeout: .now() + seconds) == .success }

    func waitUntilEnded() -> Result<VMBuilder.Boot, BenchmarkRunner.StartProblem> {
        ended.wait()
        return result.withLock { $0! }
    }
}
