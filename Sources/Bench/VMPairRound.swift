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
extension BenchmarkRunner {
    func vmPairRound(
        _ entry: Suite.Entry, _ configuration: RunConfiguration, kernel: [UInt8], cpu: VMBuilder.CPU, system: SystemKind
    ) -> RoundOutcome {
        guard configuration.netBackend == .tap else {
            return .skipped("VM to VM runs over the TAP backend's bridge; --net-backend vmm has no second VM")
        }
        guard let kind = system.ioKind, let role = BenchmarkDefinition.named(entry.id)?.peerRole else {
            return .failed("\(entry.id) needs a NIC and a serving role")
        }
        let link: VMPairLink
        do { link = try VMPairLink() } catch { return .skipped("the TAP backend is unavailable here: \(error)") }
        defer { link.close() }
        func io(_ backend: TAPBackend?) -> IOConfiguration {
            IOConfiguration(
                kind: kind, disk: nil, peer: backend, ioThread: configuration.ioThread,
                ioThreadPollMicroseconds: configuration.ioThreadPollMicroseconds)
        }
        let serving = ServingVM()
        let stop = HostStopRequest()
        let start = ServingStart(cpu: cpu, io: io(link.serving))
        let thread = Thread { [self] in
            serving.finish(
                bootGuest(
                    entry, configuration, kernel: kernel, cpu: start.cpu, repetitions: 1, warmups: 0, io: start.io,
                    extraWords: VMPairLink.servingWords(role),
                    timeout: entry.timeoutSeconds + Self.servingGrace, hostStop: stop,
                    onConsoleLine: { if $0.hasPrefix("HVB1 serving") || $0.hasPrefix("HVB1 fail") { serving.markReady() } }))
        }
        thread.name = "hvbench-serving-vm"
        thread.start()
        // The measured guest starts once the other is serving: a request sent earlier is lost.
        let ready = serving.waitUntilReady(seconds: entry.timeoutSeconds)
        var outcome: RoundOutcome = .failed("the serving VM did not start serving within \(Int(entry.timeoutSeconds)) s")
        var measured: (commandLine: String, boot: VMBuilder.Boot)?
        if ready && !serving.hasEnded {
            switch bootGuest(
                entry, configuration, kernel: kernel, cpu: cpu, repetitions: entry.repetitions, warmups: entry.warmups,
                io: io(link.measured), extraWords: VMPairLink.measuredWords)
            {
            case .success(let started):
                measured = started
                outcome = measuredRound(
                    entry, configuration, commandLine: started.commandLine, boot: started.boot, system: system)
            case .failure(let problem): outcome = .failed(problem.description)
            }
        }
        stop.request()
        let servingEnd = serving.waitUntilEnded()
        saveLog(
            servingLog(servingEnd) + "# \(link.summary)\n", system: system.rawValue, benchmark: entry.id + ".serving",
            configuration)
        if let problem = servingProblem(servingEnd) {
            if case .measured = outcome { return .failed(problem) }
            if case .failed(let reason) = outcome { return .failed("\(reason); \(problem)") }
        }
        guard case .measured(var round) = outcome, let measured else { return outcome }
        round.exits = exitCounters(entry, measured.boot, round)
        return .measured(round)
    }

    /// How much longer than the measured VM the serving one may run before its own watchdog.
    static let servingGrace = 60.0

    private func servingLog(_ end: Result<(commandLine: String, boot: VMBuilder.Boot), StartProblem>) -> String {
        switch end {
        case .success(let (commandLine, boot)):
            return "# cmdline: \(commandLine)\n\(boot.console)\n# \(boot.outcome.ending.summary)\n"
                + boot.brokenDevices.map { "# device error: \($0)\n" }.joined()
        case .failure(let problem): return "# \(problem)\n"
        }
    }

    /// Why the serving VM spoils the round, or nil when it served until it was stopped.
    private func servingProblem(_ end: Result<(commandLine: String, boot: VMBuilder.Boot), StartProblem>) -> String? {
        switch end {
        case .failure(let problem): return "the serving VM: \(problem)"
        case .success(let (_, boot)):
            if let broken = boot.brokenDevices.first { return "the serving VM's device error: \(broken)" }
            let said = boot.console.split(separator: "\n").first { $0.hasPrefix("HVB1 fail") }
            if let said { return "the serving guest failed: \(said.dropFirst(10))" }
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
    let cpu: VMBuilder.CPU
    let io: IOConfiguration
}

/// The serving VM's state, shared between its thread and the round.
private final class ServingVM: Sendable {
    private let readiness = DispatchSemaphore(value: 0)
    private let ended = DispatchSemaphore(value: 0)
    private let result = Mutex<Result<(commandLine: String, boot: VMBuilder.Boot), BenchmarkRunner.StartProblem>?>(nil)

    func markReady() { readiness.signal() }

    func finish(_ outcome: Result<(commandLine: String, boot: VMBuilder.Boot), BenchmarkRunner.StartProblem>) {
        result.withLock { $0 = outcome }
        readiness.signal()  // a VM that never got to serving must not keep the round waiting
        ended.signal()
    }

    var hasEnded: Bool { result.withLock { $0 != nil } }

    func waitUntilReady(seconds: Double) -> Bool { readiness.wait(timeout: .now() + seconds) == .success }

    func waitUntilEnded() -> Result<(commandLine: String, boot: VMBuilder.Boot), BenchmarkRunner.StartProblem> {
        ended.wait()
        return result.withLock { $0! }
    }
}
