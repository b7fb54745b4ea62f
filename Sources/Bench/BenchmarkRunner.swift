import Foundation
import KVM
import Logging
import Machine
import Results
import VMM

/// Runs a plan: every (system, benchmark) pair once per round, each time as one measurement (a
/// fresh VM, process or QEMU) by the kind of measurement that fits the pair. Failures are
/// results, not aborts: a guest that hangs, faults or prints garbage is recorded as `failed`
/// with the reason, and the run goes on.
public final class BenchmarkRunner: Sendable {
    let artifacts: ArtifactBuilder.Artifacts
    let progress: @Sendable (ProgressEvent) -> Void
    let logger = Logger(label: "hvbench.runner")

    public init(artifacts: ArtifactBuilder.Artifacts, progress: @escaping @Sendable (ProgressEvent) -> Void) {
        self.artifacts = artifacts
        self.progress = progress
    }

    /// Runs the plan's rounds: in each, every (system, benchmark) pair once, in the order the
    /// schedule's seed gives that round. Returns one result per pair (its rounds combined) and
    /// the schedule with the order things ran in.
    public func run(_ plan: RunPlan) async -> (results: [BenchmarkResult], schedule: Schedule) {
        var kvm: KVMSystem?
        var kvmProblem: String?
        if plan.systems.contains(where: { $0.needsKVM && !$0.isPeer }) {
            do { kvm = try KVMSystem() } catch {
                kvmProblem = "\(error)"
                progress(.notice("KVM modes skipped: \(error)"))
            }
        }
        let guestImage = (try? Data(contentsOf: artifacts.guestImage)).map { [UInt8]($0) } ?? []
        let tasks = plan.systems.flatMap { system in plan.suite.entries.map { (system, $0) } }
        var schedule = Schedule(rounds: plan.rounds, seed: plan.seed)
        var perTask: [[BenchmarkResult]] = Array(repeating: [], count: tasks.count)
        let total = tasks.count * plan.rounds
        var index = 0
        for round in 0..<plan.rounds {
            for task in schedule.permutation(round: round, count: tasks.count) {
                let (system, entry) = tasks[task]
                index += 1
                progress(
                    .starting(
                        system: system.name, benchmark: entry.id, index: index, total: total, repetitions: entry.repetitions))
                let started = MonotonicClock.nanoseconds()
                let context = MeasurementContext(
                    entry: entry, plan: plan, system: system, guestImage: guestImage, kvm: kvm, kvmProblem: kvmProblem)
                var result = await measure(context)
                result.wallSeconds = Double(MonotonicClock.nanoseconds() - started) / 1e9
                progress(.finished(result))
                perTask[task].append(result)
                schedule.order.append(Schedule.Slot(round: round, system: system.name, benchmark: entry.id))
            }
        }
        return (perTask.map { BenchmarkResult.combining(rounds: $0) }, schedule)
    }

    /// One (system, benchmark) pair, once: skipped where the system cannot run here, else measured
    /// by the first kind of measurement that takes the pair (adaptively repeated if asked).
    func measure(_ context: MeasurementContext) async -> BenchmarkResult {
        let (system, entry) = (context.system, context.entry)
        if let why = context.unavailability {
            return BenchmarkResult(system: system.name, benchmark: entry.id, status: .skipped, reason: why)
        }
        guard let kind = Self.measurementKinds.first(where: { $0.measures(system, context.benchmark) }) else {
            return BenchmarkResult(
                system: system.name, benchmark: entry.id, status: .failed,
                reason: "no kind of measurement runs \(entry.id) on \(system.name)")
        }
        var result = await repeatedly(context) { await kind.measure(context, by: self) }
        if result.status == .ok {
            if !system.isBaseline { result.vcpus = context.plan.vcpus(for: entry.id) }
            if context.benchmark?.needsNIC == true { result.netBackend = context.plan.network.backend.rawValue }
        }
        return result
    }

    /// Measures until one measurement is enough (or, adaptively, until the CI target or budget
    /// is reached) and merges their samples.
    func repeatedly(_ context: MeasurementContext, measure: () async -> MeasurementOutcome) async -> BenchmarkResult {
        let entry = context.entry
        var result = BenchmarkResult(
            system: context.system.name, benchmark: entry.id, engine: context.expectedEngine, status: .failed,
            iterations: entry.iterations,
            repetitions: entry.repetitions, warmups: entry.warmups)
        let started = MonotonicClock.nanoseconds()
        var merged: Measurement?
        var count = 0
        while true {
            let outcome = await measure()
            count += 1
            switch outcome {
            case .skipped(let reason):
                result.status = .skipped
                result.reason = reason
                return result
            case .failed(let reason):
                // Samples of earlier measurements are not mixed with a failed one: the benchmark failed.
                result.reason = count > 1 ? "round \(count): \(reason)" : reason
                return result
            case .measured(let measurement):
                merged = merged.map { $0.merged(with: measurement) } ?? measurement
            }
            guard let policy = context.plan.adaptive, let current = merged, let primary = current.metrics.first else { break }
            // A CI from fewer samples than the policy's minimum is not evidence of precision (one
            // sample has a zero-width interval), so the target cannot be met before that.
            let met =
                primary.values.count >= policy.minimumSamples
                && Summary(primary.values).relativeCIHalfWidth <= policy.targetRelativeHalfWidth
            let elapsed = Double(MonotonicClock.nanoseconds() - started) / 1e9
            if met || elapsed >= policy.budgetSeconds || count >= policy.maxRounds {
                result.ciTargetMet = met
                break
            }
        }
        guard let merged else { return result }
        result.status = .ok
        // What actually ran: a translating emulator whose host refused its code cache interprets.
        result.engine = merged.engine
        result.rounds = count
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

    /// Appends to the log of one (system, benchmark) pair: adaptive runs add a section per measurement.
    func saveLog(_ text: String, system: String, benchmark: String, _ plan: RunPlan) {
        let url = plan.outputDirectory.appendingPathComponent("logs/\(system)/\(benchmark).log")
        if let handle = try? FileHandle(forWritingTo: url) {
            handle.seekToEndOfFile()
            handle.write(Data(text.utf8))
            try? handle.close()
        } else {
            try? writeAtomically(Data(text.utf8), to: url)
        }
    }

    /// Counts measured repetitions as their result lines arrive, for the progress line.
    func reportSamples(_ line: String) {
        if case .sample? = try? ResultLine.parse(line) { progress(.sample) }
    }
}
