import Foundation
import KVM
import Logging
import Machine
import Results

/// Adaptive measurement: keep adding rounds (fresh VM or process, same repetitions) until the 95%
/// CI of the primary metric's median is within ±`targetRelativeHalfWidth`, or the budget is spent.
public struct AdaptivePolicy: Sendable, Equatable {
    public var targetRelativeHalfWidth: Double
    public var budgetSeconds: Double
    public var maxRounds: Int
    /// Samples needed before a CI counts: a percentile bootstrap of the median from fewer than
    /// five values has so few distinct resample medians that its width says nothing.
    public var minimumSamples = 5

    public init(targetRelativeHalfWidth: Double = 0.02, budgetSeconds: Double = 60, maxRounds: Int = 20) {
        self.targetRelativeHalfWidth = targetRelativeHalfWidth
        self.budgetSeconds = budgetSeconds
        self.maxRounds = maxRounds
    }
}

public struct RunConfiguration: Sendable {
    public var systems: [SystemKind]
    public var suite: Suite
    public var outputDirectory: URL
    public var numaNode: Int?
    public var memoryMiB: Int = 256
    /// Lengthens every timed repetition by this percentage, in the guest and natively (self-check
    /// of regression detection); 0 in normal runs.
    public var slowdownPercent: UInt64 = 0
    public var adaptive: AdaptivePolicy?
    /// Other VMMs running the same guest, after hvbench's own systems.
    public var peers: [PeerKind] = []
    /// Disk benchmarks: the raw image (default: disk.img, 64 MiB, sparse, in the output folder),
    /// O_DIRECT, and how many sectors of it the benchmarks use.
    public var diskImagePath: String?
    /// The user allowed write benchmarks to overwrite the region of an image hvbench did not create.
    public var overwriteDiskImage = false
    public var directIO = false
    public var diskRegionSectors: UInt64 = RunConfiguration.defaultDiskRegionSectors
    /// 16 MiB: what the disk benchmarks read and write of their image (nothing outside it).
    public static let defaultDiskRegionSectors: UInt64 = 32768

    public init(systems: [SystemKind], suite: Suite, outputDirectory: URL, numaNode: Int? = nil) {
        self.systems = systems
        self.suite = suite
        self.outputDirectory = outputDirectory
        self.numaNode = numaNode
    }
}

public enum ProgressEvent: Sendable {
    case starting(system: String, benchmark: String, index: Int, total: Int, repetitions: Int)
    /// A measured repetition arrived from the guest or native process.
    case sample
    case finished(BenchmarkResult)
    case notice(String)
}

/// Runs every (system, benchmark) pair of a configuration. Failures are results, not aborts:
/// a guest that hangs, faults or prints garbage is recorded as `failed` with the reason, and
/// the run goes on.
public final class BenchmarkRunner: @unchecked Sendable {
    let artifacts: ArtifactBuilder.Artifacts
    let progress: @Sendable (ProgressEvent) -> Void
    let logger = Logger(label: "hvbench.runner")

    public init(artifacts: ArtifactBuilder.Artifacts, progress: @escaping @Sendable (ProgressEvent) -> Void) {
        self.artifacts = artifacts
        self.progress = progress
    }

    /// What one VM boot or native process measured.
    struct Round {
        var metrics: [MetricSamples]
        var latency = LatencyBuckets()
        var tscHertz: Double
        var privilege: String?
        var exits: ExitCounters?
    }

    enum RoundOutcome {
        case measured(Round)
        case skipped(String)
        case failed(String)
    }

    public func run(_ configuration: RunConfiguration) async -> [BenchmarkResult] {
        var results: [BenchmarkResult] = []
        let total = (configuration.systems.count + configuration.peers.count) * configuration.suite.entries.count
        var index = 0
        var kvm: KVMSystem?
        var kvmProblem: String?
        if configuration.systems.contains(where: { $0 == .hardwareAssist || $0 == .paravirtIO }) {
            do { kvm = try KVMSystem() } catch {
                kvmProblem = "\(error)"
                progress(.notice("KVM modes skipped: \(error)"))
            }
        }
        let guestImage = (try? Data(contentsOf: artifacts.guestImage)).map { [UInt8]($0) } ?? []
        /// Announces, times and records one (system, benchmark) pair.
        func record(_ system: String, _ entry: Suite.Entry, _ body: () async -> BenchmarkResult) async {
            index += 1
            progress(.starting(system: system, benchmark: entry.id, index: index, total: total, repetitions: entry.repetitions))
            let started = MonotonicClock.nanoseconds()
            var result = await body()
            result.wallSeconds = Double(MonotonicClock.nanoseconds() - started) / 1e9
            progress(.finished(result))
            results.append(result)
        }
        for system in configuration.systems {
            for entry in configuration.suite.entries {
                await record(system.rawValue, entry) {
                    switch system {
                    case .native:
                        return await measure(system.rawValue, entry, configuration) {
                            await self.nativeRound(entry, configuration)
                        }
                    case .hardwareAssist, .paravirtIO, .fullEmulation, .emulatorVirtio:
                        let cpu: VMLauncher.CPU
                        if system.usesEmulator == true {
                            cpu = .emulator
                        } else if let kvm {
                            cpu = .kvm(kvm)
                        } else {
                            return BenchmarkResult(
                                system: system.rawValue, benchmark: entry.id, status: .skipped,
                                reason: kvmProblem ?? "KVM is not available")
                        }
                        var result = await measure(system.rawValue, entry, configuration) {
                            BenchmarkDefinition.named(entry.id)?.roundKind == .boot
                                ? self.bootRound(entry, configuration, kernel: guestImage, cpu: cpu, system: system)
                                : self.guestRound(entry, configuration, kernel: guestImage, cpu: cpu, system: system)
                        }
                        result.engine = system.usesEmulator == true ? "emulator" : "kvm"
                        return result
                    }
                }
            }
        }
        for peer in configuration.peers {
            for entry in configuration.suite.entries {
                await record(peer.rawValue, entry) {
                    if let why = QEMUPeer.unavailability(peer) {
                        return BenchmarkResult(system: peer.rawValue, benchmark: entry.id, status: .skipped, reason: why)
                    }
                    var result = await measure(peer.rawValue, entry, configuration) {
                        await self.qemuRound(peer, entry, configuration)
                    }
                    result.engine = peer == .qemuTCG ? "qemu-tcg" : "kvm"
                    return result
                }
            }
        }
        return results
    }

    /// Runs rounds until one is enough (or, adaptively, until the CI target or budget is reached)
    /// and merges their samples.
    func measure(
        _ system: String, _ entry: Suite.Entry, _ configuration: RunConfiguration, round: () async -> RoundOutcome
    ) async -> BenchmarkResult {
        var result = BenchmarkResult(
            system: system, benchmark: entry.id, engine: system == SystemKind.native.rawValue ? "host" : nil, status: .failed,
            iterations: entry.iterations, repetitions: entry.repetitions, warmups: entry.warmups)
        let started = MonotonicClock.nanoseconds()
        var merged: Round?
        var rounds = 0
        while true {
            let outcome = await round()
            rounds += 1
            switch outcome {
            case .skipped(let reason):
                result.status = .skipped
                result.reason = reason
                return result
            case .failed(let reason):
                // Samples of earlier rounds are not mixed with a failed one: the benchmark failed.
                result.reason = rounds > 1 ? "round \(rounds): \(reason)" : reason
                return result
            case .measured(let round):
                merged = merged.map { Self.merge($0, round) } ?? round
            }
            guard let policy = configuration.adaptive, let current = merged, let primary = current.metrics.first else { break }
            // A CI from fewer samples than the policy's minimum is not evidence of precision (one
            // sample has a zero-width interval), so the target cannot be met before that.
            let met =
                primary.values.count >= policy.minimumSamples
                && Summary(primary.values).relativeCIHalfWidth <= policy.targetRelativeHalfWidth
            let elapsed = Double(MonotonicClock.nanoseconds() - started) / 1e9
            if met || elapsed >= policy.budgetSeconds || rounds >= policy.maxRounds {
                result.ciTargetMet = met
                break
            }
        }
        guard let merged else { return result }
        result.status = .ok
        result.rounds = rounds
        result.repetitions = merged.metrics.first?.values.count
        result.privilege = merged.privilege
        result.exits = merged.exits
        result.metrics = merged.metrics.map(Metric.init)
        if !merged.latency.isEmpty, let index = result.metrics.firstIndex(where: { $0.name == "ns_per_op" }) {
            result.metrics[index].summary.addLatencyPercentiles(merged.latency, tscHertz: merged.tscHertz)
        }
        return result
    }

    static func merge(_ a: Round, _ b: Round) -> Round {
        var merged = a
        merged.metrics = zip(a.metrics, b.metrics).map {
            MetricSamples(name: $0.name, unit: $0.unit, better: $0.better, values: $0.values + $1.values)
        }
        merged.latency.merge(b.latency)
        if let more = b.exits { merged.exits?.add(more) }
        return merged
    }

    func jobWords(_ entry: Suite.Entry, _ configuration: RunConfiguration, repetitions: Int, warmups: Int, tscKHz: Int)
        -> [String]
    {
        var words = [
            "bench=\(entry.id)", "iterations=\(entry.iterations)", "repetitions=\(repetitions)", "warmups=\(warmups)",
            "tsc_khz=\(tscKHz)",
        ]
        if let size = entry.sizeBytes { words.append("size=\(size)") }
        if configuration.slowdownPercent > 0 { words.append("slowdown_percent=\(configuration.slowdownPercent)") }
        return words
    }

    func saveLog(_ text: String, system: String, benchmark: String, _ configuration: RunConfiguration) {
        let url = configuration.outputDirectory.appendingPathComponent("logs/\(system)/\(benchmark).log")
        // Adaptive runs append one section per round.
        if let handle = try? FileHandle(forWritingTo: url) {
            handle.seekToEndOfFile()
            handle.write(Data(text.utf8))
            try? handle.close()
        } else {
            try? writeAtomically(Data(text.utf8), to: url)
        }
    }

    func reportSamples(_ line: String) {
        if line.hasPrefix("HVB1 sample ") { progress(.sample) }
    }

    // MARK: native

    private func nativeRound(_ entry: Suite.Entry, _ configuration: RunConfiguration) async -> RoundOutcome {
        var words = jobWords(
            entry, configuration, repetitions: entry.repetitions, warmups: entry.warmups, tscKHz: TSC.calibratedKilohertz)
        let definition = BenchmarkDefinition.named(entry.id)
        var disk: DiskImage?
        if let role = definition?.peerRole { words += ["nic=loopback", "peer=\(role.rawValue)"] }
        if let definition, definition.needsDisk {
            do {
                let opened = try openDisk(definition, configuration)
                disk = opened.image
                words += ["disk_path=\(opened.image.path)", "region_sectors=\(configuration.diskRegionSectors)"]
                if !opened.patterned { words += ["disk_verify=0", "disk_readonly=1"] }
            } catch { return .failed("\(error)") }
        }
        var command = [artifacts.nativeRunner.path] + words
        if let node = configuration.numaNode {
            // Same placement as the VM: run the native process on the node's CPUs and memory.
            guard let numactl = ProcessRunner.find("numactl") else {
                return .failed(
                    "numactl is not installed, so the native run cannot be bound to NUMA node \(node) (apt-get install numactl)")
            }
            command = [numactl, "--cpunodebind=\(node)", "--membind=\(node)"] + command
        }
        let output: ProcessRunner.Output
        do {
            output = try await ProcessRunner.run(command[0], Array(command.dropFirst()), timeout: entry.timeoutSeconds) {
                self.reportSamples($0)
            }
        } catch {
            return .failed("\(error)")
        }
        let console = output.standardOutput.joined(separator: "\n")
        saveLog(
            "$ \(command.joined(separator: " "))\n\(console)\n\(output.standardError)\n# \(output.statusDescription)\n",
            system: "native",
            benchmark: entry.id, configuration)
        if output.timedOut { return .failed("native run exceeded its \(Int(entry.timeoutSeconds)) s time limit and was killed") }
        let outcome = interpret(
            console, entry: entry, tscHertz: Double(TSC.calibratedKilohertz) * 1000, privilege: { _ in "host-user" })
        if case .measured = outcome, let disk, let problem = verifyWrites(entry, disk, configuration) { return .failed(problem) }
        return outcome
    }

    // MARK: guest

    struct StartProblem: Error, CustomStringConvertible {
        let description: String
    }

    /// Boots one guest for `entry` under the watchdog and logs how the VM ended.
    private func bootGuest(
        _ entry: Suite.Entry, _ configuration: RunConfiguration, kernel: [UInt8], cpu: VMLauncher.CPU, repetitions: Int,
        warmups: Int,
        io: IOConfiguration? = nil, extraWords: [String] = []
    ) -> Result<(commandLine: String, boot: VMLauncher.Boot), StartProblem> {
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
            let boot = try VMLauncher.boot(
                kernel: kernel, commandLine: commandLine, memoryMiB: configuration.memoryMiB, timeout: entry.timeoutSeconds,
                numaNode: configuration.numaNode, cpu: cpu, io: io, onConsoleLine: { self.reportSamples($0) })
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

    private func guestRound(
        _ entry: Suite.Entry, _ configuration: RunConfiguration, kernel: [UInt8], cpu: VMLauncher.CPU, system: SystemKind
    ) -> RoundOutcome {
        let definition = BenchmarkDefinition.named(entry.id)
        var io: IOConfiguration?
        var diskPatterned = true
        if let kind = system.ioKind, definition?.needsNIC == true || definition?.needsDisk == true {
            var peer: NetworkPeer?
            var disk: DiskImage?
            if let role = definition?.peerRole { peer = NetworkPeer(mode: NetworkPeer.Mode(role)) }
            if let definition, definition.needsDisk {
                do {
                    let opened = try openDisk(definition, configuration)
                    disk = opened.image
                    diskPatterned = opened.patterned
                } catch { return .failed("\(error)") }
            }
            io = IOConfiguration(kind: kind, disk: disk, peer: peer)
        }
        let commandLine: String
        let boot: VMLauncher.Boot
        switch bootGuest(
            entry, configuration, kernel: kernel, cpu: cpu, repetitions: entry.repetitions, warmups: entry.warmups, io: io,
            extraWords: diskPatterned ? [] : ["disk_verify=0"])
        {
        case .success(let started): (commandLine, boot) = started
        case .failure(let problem): return .failed(problem.description)
        }
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
        guard case .measured(var round) = outcome else { return outcome }
        if let peer = io?.peer {
            if let error = peer.errors.first { return .failed("the network peer found a bad frame: \(error)") }
            let expected = (entry.warmups + entry.repetitions) * Int(entry.iterations)
            if peer.mode == .sink && peer.framesFromGuest < expected {
                return .failed("the sink received \(peer.framesFromGuest) frames, the guest reported \(expected)")
            }
        }
        if let disk = io?.disk, let problem = verifyWrites(entry, disk, configuration) { return .failed(problem) }
        var exits = boot.outcome.counters
        exits.operations = (entry.warmups + entry.repetitions) * Int(entry.iterations) + Int(round.latency.operations)
        round.exits = exits
        return .measured(round)
    }

    /// The disk image for a disk benchmark, opened and prepared by the data-safety rules of
    /// `BenchmarkDisk`.
    func openDisk(_ definition: BenchmarkDefinition, _ configuration: RunConfiguration) throws -> BenchmarkDisk.Opened {
        let path = configuration.diskImagePath ?? configuration.outputDirectory.appendingPathComponent("disk.img").path
        if configuration.diskImagePath == nil {
            try FileManager.default.createDirectory(at: configuration.outputDirectory, withIntermediateDirectories: true)
        }
        return try BenchmarkDisk.open(
            path: path, isDefault: configuration.diskImagePath == nil, writes: definition.writesDisk,
            overwrite: configuration.overwriteDiskImage, regionSectors: configuration.diskRegionSectors,
            direct: configuration.directIO)
    }

    /// After a write benchmark: the region must hold only the prepared and the written pattern,
    /// and some sectors must have been written.
    func verifyWrites(_ entry: Suite.Entry, _ disk: DiskImage, _ configuration: RunConfiguration) -> String? {
        guard BenchmarkDefinition.named(entry.id)?.writesDisk == true else { return nil }
        do {
            switch try DiskPattern.verify(disk, sectors: configuration.diskRegionSectors) {
            case .success(let written): return written > 0 ? nil : "no sector of the disk holds the written pattern"
            case .failure(let problem): return "data check after writing: \(problem)"
            }
        } catch {
            return "data check after writing: \(error)"
        }
    }

    /// vm.boot: one VM per sample, timed from the start of VM construction to the guest's
    /// "main at CPL3" milestone on port 0x80.
    private func bootRound(
        _ entry: Suite.Entry, _ configuration: RunConfiguration, kernel: [UInt8], cpu: VMLauncher.CPU, system: SystemKind
    ) -> RoundOutcome {
        var toMain: [Double] = []
        var toFirstInstruction: [Double] = []
        var exits = ExitCounters()
        var privilege: String?
        var log = ""
        defer { saveLog(log, system: system.rawValue, benchmark: entry.id, configuration) }
        for boot in 0..<(entry.warmups + entry.repetitions) {
            let run: VMLauncher.Boot
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

    /// Reads a transcript into a round, a skip or a failure.
    func interpret(_ console: String, entry: Suite.Entry, tscHertz: Double, privilege: (Int) -> String) -> RoundOutcome {
        let transcript: BenchmarkTranscript
        do {
            transcript = try BenchmarkTranscript.parse(console: console, bench: entry.id)
        } catch {
            return .failed("\(error)")
        }
        switch transcript.status {
        case .ok:
            guard transcript.samples.count == entry.repetitions else {
                return .failed("expected \(entry.repetitions) samples, got \(transcript.samples.count)")
            }
            let metrics = MetricDerivation.metrics(for: entry.id, samples: transcript.samples, tscHertz: tscHertz)
            if let broken = metrics.first(where: { $0.values.contains { !$0.isFinite } }) {
                return .failed("\(broken.name) is not a finite number (\(broken.values)); TSC rate \(tscHertz) Hz")
            }
            return .measured(
                Round(
                    metrics: metrics, latency: transcript.latency, tscHertz: tscHertz,
                    privilege: transcript.privilegeLevel.map(privilege)))
        case .skipped(let reason): return .skipped(reason)
        case .failed(let reason): return .failed(reason)
        }
    }
}
