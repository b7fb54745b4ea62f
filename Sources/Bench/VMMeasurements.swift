import Foundation
import Machine
import Results
import VMM

/// One boot of the benchmark guest under hvbench's VMM runs one benchmark.
enum GuestMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        if case .vm = system.runner { return true }
        return false
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        guard let cpu = context.cpu, let devices = context.system.devices else {
            return .failed("\(context.system.name) is not one of hvbench's VMs")
        }
        let entry = context.entry
        let benchmark = context.benchmark
        var job = context.job()
        var io: IOConfiguration?
        var attachments = Attachments()
        defer { attachments.close() }
        if benchmark?.needsNIC == true || benchmark?.needsDisk == true {
            do { attachments = try Attachments.open(context, attachment: .vmm, job: &job) } catch { return error.outcome }
            var peer: (any NetworkBackend)? = attachments.link?.backend
            if let role = benchmark?.peerRole {
                if peer == nil { peer = NetworkPeer(mode: NetworkPeer.Mode(role)) }
                job.nic = devices.guestNIC
            }
            if attachments.disk != nil { job.disk = devices.guestDisk }
            io = context.plan.vm.io(devices, disk: attachments.disk?.image, peer: peer)
        }
        if benchmark?.needsBalloon == true {
            io = io ?? context.plan.vm.io(devices, disk: nil, peer: nil)
            io?.balloon = BalloonControl()
            job.balloon = true
        }
        let boot: VMBuilder.Boot
        switch runner.bootGuest(context, job, cpu: cpu, io: io) {
        case .success(let started): boot = started
        case .failure(let problem): return .failed(problem.description)
        }
        var outcome = runner.readMeasuredVM(context, job, boot)
        if case .measured = outcome, let peer = io?.peer as? NetworkPeer {
            if let error = peer.errors.first { return .failed("the network peer found a bad frame: \(error)") }
            if peer.mode == .sink && peer.framesFromGuest < entry.timedOperations {
                return .failed("the sink received \(peer.framesFromGuest) frames, the guest reported \(entry.timedOperations)")
            }
        }
        outcome = attachments.check(outcome, context, by: runner)
        guard case .measured(var measurement) = outcome else { return outcome }
        measurement.exits = exitCounters(entry, boot, measurement)
        if benchmark?.needsBalloon == true {
            measurement.metrics += MetricDerivation.residencyMetrics(
                boot.outcome.milestones.compactMap { milestone in milestone.residentBytes.map { (milestone.code, $0) } },
                repetitions: entry.repetitions)
        }
        return .measured(measurement)
    }

    /// The measured VM's exit counters, with the operations they are per.
    static func exitCounters(_ entry: Suite.Entry, _ boot: VMBuilder.Boot, _ measurement: Measurement) -> ExitCounters {
        var exits = boot.outcome.counters
        exits.operations = entry.timedOperations + Int(measurement.latency.operations)
        return exits
    }
}

/// vm.boot: one VM per sample, timed from the start of VM construction to the guest's "main at
/// CPL3" milestone on port 0x80.
enum VMBootMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        GuestMeasurement.measures(system, benchmark) && benchmark?.timing == .wholeBoots
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        guard let cpu = context.cpu else { return .failed("\(context.system.name) is not one of hvbench's VMs") }
        let entry = context.entry
        var toMain: [Double] = []
        var toFirstInstruction: [Double] = []
        var exits = ExitCounters()
        var privilege: String?
        var engine = context.expectedEngine
        var log = ""
        defer { context.log(log, by: runner) }
        for boot in 0..<entry.boots {
            let run: VMBuilder.Boot
            switch runner.bootGuest(context, context.job(repetitions: 1, warmups: 0), cpu: cpu, io: nil) {
            case .success(let started): run = started
            case .failure(let problem): return .failed(problem.description)
            }
            log += "# boot \(boot)\n\(run.console)\n# \(run.outcome.ending.summary)\n# start-up: \(run.startupPhases)\n"
            let start = run.outcome.startedAtNanoseconds
            guard case .exitDevice(let status) = run.outcome.ending, status == 1,
                let main = run.outcome.milestones.first(where: { $0.code == 3 }),
                let first = run.outcome.milestones.first(where: { $0.code == 1 })
            else {
                return .failed(
                    "boot \(boot): \(run.outcome.ending.summary); milestones seen: \(run.outcome.milestones.map(\.code))")
            }
            if let level = try? BenchmarkTranscript.parse(console: run.console, bench: entry.id).privilegeLevel {
                privilege = "cpl\(level)"
            }
            exits = run.outcome.counters
            engine = run.engineName
            if boot >= entry.warmups {
                toMain.append(Double(main.nanoseconds - start) / 1e6)
                toFirstInstruction.append(Double(first.nanoseconds - start) / 1e6)
                runner.progress(.sample)
            }
        }
        return .measured(
            Measurement(
                metrics: MetricDerivation.bootMetrics(toMain: toMain, toFirstInstruction: toFirstInstruction), tscHertz: 1,
                privilege: privilege, engine: engine, exits: exits))
    }
}

extension VMSettings {
    /// A VM's I/O: the device set with its backends, and the plan's I/O thread.
    func io(_ devices: SystemDefinition.Devices, disk: DiskImage?, peer: (any NetworkBackend)?) -> IOConfiguration {
        IOConfiguration(
            kind: devices, disk: disk, peer: peer, ioThread: ioThread, ioThreadPollMicroseconds: ioThreadPollMicroseconds)
    }
}

extension BenchmarkRunner {
    struct StartProblem: Error, CustomStringConvertible {
        let description: String
    }

    /// Boots one guest for the job under the watchdog and logs how the VM ended.
    func bootGuest(
        _ context: MeasurementContext, _ job: GuestJob, cpu: VMBuilder.CPU, io: IOConfiguration?, timeout: Double? = nil,
        hostStop: HostStopRequest? = nil, onConsoleLine: ((String) -> Void)? = nil,
        prepare: ((GuestMemory) throws -> Void)? = nil
    ) -> Result<VMBuilder.Boot, StartProblem> {
        let plan = context.plan
        do {
            let boot = try VMBuilder.boot(
                VMDescription(
                    kernel: context.guestImage, commandLine: job.commandLine, memoryMiB: plan.vm.memoryMiB, cpu: cpu,
                    vcpus: plan.vcpus(for: context.entry.id), io: io, numaNode: plan.placement.numaNode,
                    pinnedCPUs: plan.placement.pinnedCPUs), timeout: timeout ?? context.entry.timeoutSeconds,
                onConsoleLine: onConsoleLine ?? { self.reportSamples($0) }, prepare: prepare, hostStop: hostStop)
            logger.debug(
                "VM finished",
                metadata: [
                    "benchmark": "\(context.entry.id)", "ending": "\(boot.outcome.ending.summary)",
                    "exits": "\(boot.outcome.counters)", "milestones": "\(boot.outcome.milestones.map(\.code))",
                    "tsc_khz": "\(boot.guestTSCKilohertz)",
                ])
            return .success(boot)
        } catch {
            return .failure(StartProblem(description: "could not start the VM: \(error)"))
        }
    }

    /// Logs the measured guest's boot and reads its transcript; a VM that did not exit cleanly,
    /// or a device the guest broke, fails the measurement.
    func readMeasuredVM(_ context: MeasurementContext, _ job: GuestJob, _ boot: VMBuilder.Boot) -> MeasurementOutcome {
        context.log(
            "# cmdline: \(job.commandLine)\n\(boot.console)\n# \(boot.outcome.ending.summary)\n"
                + boot.brokenDevices.map { "# device error: \($0)\n" }.joined()
                + boot.engineDiagnostics.map { "# \($0)\n" }.joined(), by: self)
        if let broken = boot.brokenDevices.first { return .failed("device error: \(broken)") }
        let outcome = readTranscript(
            boot.console, context, tscHertz: Double(boot.guestTSCKilohertz) * 1000, engine: boot.engineName)
        guard case .exitDevice = boot.outcome.ending else {
            // The transcript may look complete, but a VM that did not exit cleanly is not trusted.
            var reason = boot.outcome.ending.summary
            if case .failed(let guestSaid) = outcome { reason += "; guest said: \(guestSaid)" }
            if let finding = boot.engineDiagnostics.first { reason += "; \(finding)" }
            return .failed(reason)
        }
        if case .failed(let guestSaid) = outcome, let finding = boot.engineDiagnostics.first {
            return .failed("\(guestSaid); \(finding)")
        }
        return outcome
    }
}
