import Foundation
import Machine
import Results
import Synchronization
import VMM

/// The VM-to-VM benchmarks under QEMU: the same pair of guests as hvbench's, two QEMU processes
/// started inside the run's namespace on the two ports of the same bridge (`VMPairLink`).
enum QEMUPairMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        system.isPeer && benchmark?.vmToVM == true
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        let (entry, plan) = (context.entry, context.plan)
        guard plan.network.backend == .tap else {
            return .skipped("VM to VM runs over the TAP backend's bridge; --net-backend vmm has no second VM")
        }
        guard let qemu = QEMUPeer.executable else { return .skipped("qemu-system-x86_64 is not installed") }
        guard let nsenter = ProcessRunner.find("nsenter") else {
            return .skipped("the TAP backend runs QEMU through nsenter (util-linux), which is not installed")
        }
        guard case .qemu(let kvm, let devices) = context.system.runner, let role = context.benchmark?.peerRole else {
            return .failed("\(entry.id) has no serving role")
        }
        let link: VMPairLink
        do { link = try VMPairLink(forQEMU: true) } catch { return .skipped("the TAP backend is unavailable here: \(error)") }
        defer { link.close() }
        func command(_ job: GuestJob, interface: String, mac: MACAddress) -> [String] {
            var job = job
            let devices = QEMUPeer.deviceArguments(
                devices, nic: true, diskPath: nil, tapInterface: interface, mac: mac, job: &job)
            return Array(link.namespace.enterCommand.dropFirst()) + [qemu]
                + QEMUPeer.arguments(
                    kvm: kvm, kernel: runner.artifacts.guestImage, commandLine: job.commandLine,
                    memoryMiB: plan.vm.memoryMiB, vcpus: plan.vcpus(for: entry.id)) + devices
        }
        var measuredJob = context.job()
        measuredJob.udp = VMPairLink.measuredEndpoints
        let servingArguments = command(
            VMPairLink.servingJob(role, for: measuredJob), interface: VMPairLink.servingInterface,
            mac: VMPairLink.servingMAC)
        let stop = HostStopRequest()
        let ready = AsyncReadiness()
        let serving = Task {
            try await ProcessRunner.run(
                nsenter, servingArguments, timeout: entry.timeoutSeconds + VMPairMeasurement.servingGrace, stop: stop
            ) { line in if VMPairMeasurement.isServingOrFailed(line) { ready.mark() } }
        }
        var outcome: MeasurementOutcome = .failed(
            "the serving QEMU did not start serving within \(Int(entry.timeoutSeconds)) s")
        if await ready.wait(seconds: entry.timeoutSeconds) {
            let arguments = command(
                measuredJob, interface: VMPairLink.measuredInterface, mac: VMPairLink.measuredMAC)
            outcome = await runner.measureProcess(
                [nsenter] + arguments, shown: arguments.joined(separator: " "), context, what: "QEMU",
                engine: context.expectedEngine)
        }
        stop.request()
        let problem: String?
        switch await serving.result {
        case .success(let output):
            let console = output.standardOutput.joined(separator: "\n")
            context.log(
                "$ \(servingArguments.joined(separator: " "))\n\(console)\n\(output.standardError)\n# \(output.statusDescription)\n",
                by: runner, part: ".serving")
            if let said = VMPairMeasurement.failure(in: output.standardOutput) {
                problem = "the serving guest failed: \(said)"
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
