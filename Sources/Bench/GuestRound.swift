import Foundation
import Machine
import VMM
import Results

/// Guest rounds: one boot of the benchmark guest runs one benchmark; a boot round times whole boots.
extension BenchmarkRunner {
    struct StartProblem: Error, CustomStringConvertible {
        let description: String
    }

    /// Boots one guest for `entry` under the watchdog and logs how the VM ended.
    func bootGuest(
        _ entry: Suite.Entry, _ configuration: RunConfiguration, kernel: [UInt8], cpu: VMBuilder.CPU, repetitions: Int,
        warmups: Int,
        io: IOConfiguration? = nil, extraWords: [String] = [], timeout: Double? = nil, hostStop: HostStopRequest? = nil,
        onConsoleLine: ((String) -> Void)? = nil
    ) -> Result<(commandLine: String, boot: VMBuilder.Boot), StartProblem> {
        var words =
            jobWords(entry, configuration, repetitions: repetitions, warmups: warmups, tscKHz: TSC.calibratedKilohertz)
            + extraWords
        if let io {
            if io.peer != nil { words.append("nic=\(io.kind == .legacy ? "e1000" : "virtio")") }
            if io.disk != nil {
                words += ["disk=\(io.kind == .legacy ? "ide" : "virtio")", "region_sectors=\(configuration.diskRegionSectors)"]
            }
        }
        let commandLine = words.joined(separator: " ")
        do {
            let boot = try VMBuilder.boot(
                kernel: kernel, commandLine: commandLine, memoryMiB: configuration.memoryMiB,
                timeout: timeout ?? entry.timeoutSeconds, numaNode: configuration.numaNode,
                pinnedCPUs: configuration.pinnedCPUs, cpu: cpu, vcpus: configuration.vcpus(for: entry.id), io: io,
                onConsoleLine: onConsoleLine ?? { self.reportSamples($0) }, hostStop: hostStop)
            logger.debug(
                "VM finished",
                metadata: [
                    "benchmark": "\(entry.id)", "ending": "\(boot.outcome.ending.summary)", "exits": "\(boot.outcome.counters)",
                    "milestones": "\(boot.outcome.milestones.map(\.code))", "tsc_khz": "\(boot.guestTSCKilohertz)",
                ])
            return .success((commandLine, boot))
        } catch {
            return .failure(StartProblem(description: "could not start the VM: \(error)"))
        }
    }

    func guestRound(
        _ entry: Suite.Entry, _ configuration: RunConfiguration, kernel: [UInt8], cpu: VMBuilder.CPU, system: SystemKind
    ) -> RoundOutcome {
        let definition = BenchmarkDefinition.named(entry.id)
        var io: IOConfiguration?
        var extraWords: [String] = []  // the disk's and the TAP link's job words
        var link: TAPLink?
        defer { link?.close() }
        if let kind = system.ioKind, definition?.needsNIC == true || definition?.needsDisk == true {
            var peer: (any NetworkBackend)?
            var disk: DiskImage?
            if let role = definition?.peerRole {
                if configuration.netBackend == .tap {
                    switch TAPLink.make(for: role, attachment: .vmm, configuration) {
                    case .success(let made): link = made
                    case .failure(let problem): return .skipped(problem.description)
                    }
                    peer = link?.backend
                    extraWords += link?.jobWords ?? []
                } else {
                    peer = NetworkPeer(mode: NetworkPeer.Mode(role))
                }
            }
            if let definition, definition.needsDisk {
                do {
                    let opened = try openDisk(definition, configuration)
                    disk = opened.image
                    extraWords += opened.jobWords
                } catch { return .failed("\(error)") }
            }
            io = IOConfiguration(
                kind: kind, disk: disk, peer: peer, ioThread: configuration.ioThread,
                ioThreadPollMicroseconds: configuration.ioThreadPollMicroseconds)
        }
        let commandLine: String
        let boot: VMBuilder.Boot
        switch bootGuest(
            entry, configuration, kernel: kernel, cpu: cpu, repetitions: entry.repetitions, warmups: entry.warmups, io: io,
            extraWords: extraWords)
        {
        case .success(let started): (commandLine, boot) = started
        case .failure(let problem): return .failed(problem.description)
        }
        let outcome = measuredRound(entry, configuration, commandLine: commandLine, boot: boot, system: system)
        guard case .measured(var round) = outcome else { return outcome }
        if let peer = io?.peer as? NetworkPeer {
            if let error = peer.errors.first { return .failed("the network peer found a bad frame: \(error)") }
            let expected = (entry.warmups + entry.repetitions) * Int(entry.iterations)
            if peer.mode == .sink && peer.framesFromGuest < expected {
                return .failed("the sink received \(peer.framesFromGuest) frames, the guest reported \(expected)")
            }
        }
        if let link {
            let problem = link.problem(afterGuestSent: (entry.warmups + entry.repetitions) * Int(entry.iterations))
            saveLog("# \(link.summary)\n", system: system.rawValue, benchmark: entry.id + ".tap", configuration)
            if let problem { return .failed(problem) }
        }
        if let disk = io?.disk, let problem = verifyWrites(entry, disk, configuration) { return .failed(problem) }
        round.exits = exitCounters(entry, boot, round)
        return .measured(round)
    }

    /// Logs the measured guest's boot and reads its transcript; a VM that did not exit cleanly,
    /// or a device the guest broke, fails the round.
    func measuredRound(
        _ entry: Suite.Entry, _ configuration: RunConfiguration, commandLine: String, boot: VMBuilder.Boot, system: SystemKind
    ) -> RoundOutcome {
        saveLog(
            "# cmdline: \(commandLine)\n\(boot.console)\n# \(boot.outcome.ending.summary)\n"
                + boot.brokenDevices.map { "# device error: \($0)\n" }.joined()
                + boot.engineDiagnostics.map { "# \($0)\n" }.joined(),
            system: system.rawValue, benchmark: entry.id, configuration)
        if let broken = boot.brokenDevices.first { return .failed("device error: \(broken)") }
        let outcome = interpret(
            boot.console, entry: entry, tscHertz: Double(boot.guestTSCKilohertz) * 1000, privilege: { "cpl\($0)" })
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

    /// The measured VM's exit counters, with the operations they are per.
    func exitCounters(_ entry: Suite.Entry, _ boot: VMBuilder.Boot, _ round: Round) -> ExitCounters {
        var exits = boot.outcome.counters
        exits.operations = (entry.warmups + entry.repetitions) * Int(entry.iterations) + Int(round.latency.operations)
        return exits
    }

    /// vm.boot: one VM per sample, timed from the start of VM construction to the guest's
    /// "main at CPL3" milestone on port 0x80.
    func bootRound(
        _ entry: Suite.Entry, _ configuration: RunConfiguration, kernel: [UInt8], cpu: VMBuilder.CPU, system: SystemKind
    ) -> RoundOutcome {
        var toMain: [Double] = []
        var toFirstInstruction: [Double] = []
        var exits = ExitCounters()
        var privilege: String?
        var log = ""
        defer { saveLog(log, system: system.rawValue, benchmark: entry.id, configuration) }
        for boot in 0..<(entry.warmups + entry.repetitions) {
            let run: VMBuilder.Boot
            switch bootGuest(entry, configuration, kernel: kernel, cpu: cpu, repetitions: 1, warmups: 0) {
            case .success(let started): run = started.boot
            case .failure(let problem): return .failed(problem.description)
            }
            log += "# boot \(boot)\n\(run.console)\n# \(run.outcome.ending.summary)\n"
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
            if boot >= entry.warmups {
                toMain.append(Double(main.nanoseconds - start) / 1e6)
                toFirstInstruction.append(Double(first.nanoseconds - start) / 1e6)
                progress(.sample)
            }
        }
        return .measured(
            Round(
                metrics: [
                    MetricSamples(name: "boot_time", unit: "ms", better: .lower, values: toMain),
                    MetricSamples(name: "to_first_instruction", unit: "ms", better: .lower, values: toFirstInstruction),
                ], tscHertz: 1, privilege: privilege, exits: exits))
    }
}
