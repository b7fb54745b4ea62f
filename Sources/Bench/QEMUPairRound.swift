import Foundation
import Machine
import Results
import Synchronization
import VMM

/// The VM-to-VM benchmarks under QEMU: the same pair of guests as hvbench's, two QEMU processes
/// started inside the run's namespace on the two ports of the same bridge (`VMPairLink`).
extension BenchmarkRunner {
    func qemuPairRound(_ peer: PeerKind, qemu: String, _ entry: Suite.Entry, _ configuration: RunConfiguration) async
        -> RoundOutcome
    {
        guard configuration.netBackend == .tap else {
            return .skipped("VM to VM runs over the TAP backend's bridge; --net-backend vmm has no second VM")
        }
        guard let nsenter = ProcessRunner.find("nsenter") else {
            return .skipped("the TAP backend runs QEMU through nsenter (util-linux), which is not installed")
        }
        guard let role = BenchmarkDefinition.named(entry.id)?.peerRole else { return .failed("\(entry.id) has no serving role") }
        let link: VMPairLink
        do { link = try VMPairLink(forQEMU: true) } catch { return .skipped("the TAP backend is unavailable here: \(error)") }
        defer { link.close() }
        let vcpus = configuration.vcpus(for: entry.id)
        func command(_ words: [String], interface: String, mac: MACAddress, repetitions: Int, warmups: Int) -> [String] {
            let devices = QEMUPeer.deviceArguments(peer, nic: true, diskPath: nil, tapInterface: interface, mac: mac)
            let job =
                jobWords(entry, configuration, repetitions: repetitions, warmups: warmups, tscKHz: TSC.calibratedKilohertz)
                + words + devices.words
            return Array(link.namespace.enterCommand.dropFirst()) + [qemu]
                + QEMUPeer.arguments(
                    peer, kernel: artifacts.guestImage, commandLine: job.joined(separator: " "),
                    memoryMiB: configuration.memoryMiB, vcpus: vcpus) + devices.arguments
        }
        let servingArguments = command(
            VMPairLink.servingWords(role), interface: VMPairLink.servingInterface,
            mac: VMPairLink.servingMAC, repetitions: 1, warmups: 0)
        let stop = HostStopRequest()
        let ready = AsyncReadiness()
        let serving = Task {
            try await ProcessRunner.run(
                nsenter, servingArguments, timeout: entry.timeoutSeconds + Self.servingGrace, stop: stop
            ) { line in if line.hasPrefix("HVB1 serving") || line.hasPrefix("HVB1 fail") { ready.mark() } }
        }
        var outcome: RoundOutcome = .failed("the serving QEMU did not start serving within \(Int(entry.timeoutSeconds)) s")
        if await ready.wait(seconds: entry.timeoutSeconds) {
            let arguments = command(
                VMPairLink.measuredWords, interface: VMPairLink.measuredInterface, mac: VMPairLink.measuredMAC,
                repetitions: entry.repetitions, warmups: entry.warmups)
            do {
                let output = try await ProcessRunner.run(nsenter, arguments, timeout: entry.timeoutSeconds) {
                    self.reportSamples($0)
                }
                let console = output.standardOutput.joined(separator: "\n")
                saveLog(
                    "$ \(arguments.joined(separator: " "))\n\(console)\n\(output.standardError)\n# \(output.statusDescription)\n",
                    system: peer.rawValue, benchmark: entry.id, configuration)
                outcome =
                    output.timedOut
                    ? .failed("QEMU exceeded its \(Int(entry.timeoutSeconds)) s time limit and was killed")
                    : interpret(
                        console, entry: entry, tscHertz: Double(TSC.calibratedKilohertz) * 1000, privilege: { "cpl\($0)" })
            } catch {
                outcome = .failed("\(error)")
            }
        }
        stop.request()
        let problem: String?
        switch await serving.result {
        case .success(let output):
            let console = output.standardOutput.joined(separator: "\n")
            saveLog(
                "$ \(servingArguments.joined(separator: " "))\n\(console)\n\(output.standardError)\n# \(output.statusDescription)\n",
                system: peer.rawValue, benchmark: entry.id + ".serving", configuration)
            if let said = output.standardOutput.first(where: { $0.hasPrefix("HVB1 fail") }) {
                problem = "the serving guest failed: \(said.dropFirst(10))"
            } else if !output.stoppedOnRequest {
                problem = "the serving QEMU ended before it was stopped: \(output.statusDescription)"
            } else {
                problem = nil
            }
        case .failure(let error): problem = "the serving QEMU: \(error)"
        }
        guard let problem else { return outcome }
        if case .failed(let reason) = outcome { return .failed("\(reason); \(problem)") }
        return .failed(problem)
    }
}

/// Set once the serving guest has said it serves (or failed); awaited with a time limit.
private final class AsyncReadiness: Sendable {
    private let marked = Atomic<Bool>(false)

    func mark() { marked.store(true, ordering: .releasing) }

    func wait(seconds: Double) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while !marked.load(ordering: .acquiring) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        return marked.load(ordering: .acquiring)
    }
}
