import Foundation
import KVM
import Logging
import Machine
import VMM
import Results
import X86

/// Runs every (system, benchmark) pair of a configuration. Failures are results, not aborts:
/// a guest that hangs, faults or prints garbage is recorded as `failed` with the reason, and
/// the run goes on.
public final class BenchmarkRunner: Sendable {
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
        var guestInterrupts: GuestInterruptCounts?
    }

    enum RoundOutcome {
        case measured(Round)
        case skipped(String)
        case failed(String)
    }

    public func run(_ configuration: RunConfiguration) async -> [BenchmarkResult] {
        await schedule(configuration).results
    }

    /// Runs the configuration's rounds: in each, every (system or peer, benchmark) pair once, in
    /// the order the schedule's seed gives that round. Returns one result per pair (its rounds
    /// combined) and the schedule with the order things ran in.
    public func schedule(_ configuration: RunConfiguration) async -> (results: [BenchmarkResult], schedule: Schedule) {
        var kvm: KVMSystem?
        var kvmProblem: String?
        if configuration.systems.contains(where: { $0 == .hardwareAssist || $0 == .paravirtIO }) {
            do { kvm = try KVMSystem() } catch {
                kvmProblem = "\(error)"
                progress(.notice("KVM modes skipped: \(error)"))
            }
        }
        let guestImage = (try? Data(contentsOf: artifacts.guestImage)).map { [UInt8]($0) } ?? []
        let variants = configuration.systems.filter { $0.usesEmulator == true }.flatMap { system in
            configuration.otherEmulators.map { Target.emulatorVariant(system, $0) }
        }
        let targets = configuration.systems.map(Target.system) + variants + configuration.peers.map(Target.peer)
        let tasks = targets.flatMap { target in configuration.suite.entries.map { (target, $0) } }
        var schedule = Schedule(rounds: configuration.rounds, seed: configuration.seed)
        var perTask: [[BenchmarkResult]] = Array(repeating: [], count: tasks.count)
        let total = tasks.count * configuration.rounds
        var index = 0
        for round in 0..<configuration.rounds {
            for task in schedule.permutation(round: round, count: tasks.count) {
                let (target, entry) = tasks[task]
                index += 1
                progress(
                    .starting(
                        system: target.name, benchmark: entry.id, index: index, total: total, repetitions: entry.repetitions))
                let started = MonotonicClock.nanoseconds()
                var result = await runOnce(target, entry, configuration, kvm: kvm, kvmProblem: kvmProblem, guestImage: guestImage)
                result.wallSeconds = Double(MonotonicClock.nanoseconds() - started) / 1e9
                progress(.finished(result))
                perTask[task].append(result)
                schedule.order.append(Schedule.Slot(round: round, system: target.name, benchmark: entry.id))
            }
        }
        return (perTask.map { BenchmarkResult.combining(rounds: $0) }, schedule)
    }

    /// What a run measures: one of hvbench's systems, or a peer VMM running the same guest.
    enum Target {
        case system(SystemKind)
        case peer(PeerKind)
        /// An emulator mode run with another emulator than the configuration's (`otherEmulators`).
        case emulatorVariant(SystemKind, EmulatorKind)

        var name: String {
            switch self {
            case .system(let system): return system.rawValue
            case .peer(let peer): return peer.rawValue
            case .emulatorVariant(let system, let emulator): return "\(system.rawValue)-\(emulator.rawValue)"
            }
        }
    }

    /// One (system or peer, benchmark) pair, once: a fresh VM, process or QEMU.
    private func runOnce(
        _ target: Target, _ entry: Suite.Entry, _ configuration: RunConfiguration, kvm: KVMSystem?, kvmProblem: String?,
        guestImage: [UInt8]
    ) async -> BenchmarkResult {
        let kind: SystemKind
        switch target {
        case .emulatorVariant(let system, let emulator):
            var variant = configuration
            variant.emulator = emulator
            var result = await runOnce(
                .system(system), entry, variant, kvm: kvm, kvmProblem: kvmProblem, guestImage: guestImage)
            result.system = target.name
            return result
        case .peer(let peer):
            if let why = QEMUPeer.unavailability(peer) {
                return BenchmarkResult(system: peer.rawValue, benchmark: entry.id, status: .skipped, reason: why)
            }
            var result = await measure(peer.rawValue, entry, configuration) {
                await self.qemuRound(peer, entry, configuration)
            }
            result.engine = peer == .qemuTCG ? "qemu-tcg" : "kvm"
            if result.status == .ok { result.vcpus = configuration.vcpus(for: entry.id) }
            if result.status == .ok, BenchmarkDefinition.named(entry.id)?.needsNIC == true {
                // QEMU's UDP socket backend stands in for the in-VMM peer; over a TAP it is the same path.
                result.netBackend = configuration.netBackend.rawValue
            }
            return result
        case .system(let system): kind = system
        }
        let system = kind.rawValue
        switch kind {
        case .native:
            var result = await measure(system, entry, configuration) { await self.nativeRound(entry, configuration) }
            if result.status == .ok, BenchmarkDefinition.named(entry.id)?.needsNIC == true {
                // vmm: the in-process peer, the native counterpart of the in-VMM one.
                result.netBackend = configuration.netBackend.rawValue
            }
            return result
        case .hardwareAssist, .paravirtIO, .fullEmulation, .emulatorVirtio:
            let cpu: VMBuilder.CPU
            if kind.usesEmulator == true {
                cpu = .emulator(configuration.emulator)
            } else if let kvm {
                cpu = .kvm(kvm)
            } else {
                return BenchmarkResult(
                    system: system, benchmark: entry.id, status: .skipped, reason: kvmProblem ?? "KVM is not available")
            }
            var result = await measure(system, entry, configuration) {
                let definition = BenchmarkDefinition.named(entry.id)
                if definition?.roundKind == .boot {
                    return self.bootRound(entry, configuration, kernel: guestImage, cpu: cpu, system: kind)
                }
                if definition?.vmToVM == true {
                    return self.vmPairRound(entry, configuration, kernel: guestImage, cpu: cpu, system: kind)
                }
                return self.guestRound(entry, configuration, kernel: guestImage, cpu: cpu, system: kind)
            }
            result.engine = kind.usesEmulator == true ? "emulator-\(configuration.emulator.rawValue)" : "kvm"
            if result.status == .ok { result.vcpus = configuration.vcpus(for: entry.id) }
            if result.status == .ok, BenchmarkDefinition.named(entry.id)?.needsNIC == true {
                result.netBackend = configuration.netBackend.rawValue
            }
            return result
        }
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
        result.guestInterrupts = merged.guestInterrupts
        result.metrics = merged.metrics.map { Metric($0) }
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
        if let more = b.guestInterrupts { merged.guestInterrupts?.add(more) }
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
            var interrupts = transcript.interrupts
            interrupts?.operations =
                (entry.warmups + entry.repetitions) * Int(entry.iterations) + Int(transcript.latency.operations)
            return .measured(
                Round(
                    metrics: metrics, latency: transcript.latency, tscHertz: tscHertz,
                    privilege: transcript.privilegeLevel.map(privilege), guestInterrupts: interrupts))
        case .skipped(let reason): return .skipped(reason)
        case .failed(let reason): return .failed(reason)
        }
    }
}
