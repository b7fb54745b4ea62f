import Foundation
import KVM
import Machine
import Results
import VMM

/// What one VM boot, native process or QEMU process measured.
struct Measurement {
    var metrics: [MetricSamples]
    var latency = LatencyBuckets()
    var tscHertz: Double
    var privilege: String?
    /// What ran the code: "host", "kvm", "emulator-translate", "emulator-interpret", "qemu-tcg".
    var engine: String
    var exits: ExitCounters?
    var guestInterrupts: GuestInterruptCounts?

    func merged(with other: Measurement) -> Measurement {
        var merged = self
        merged.metrics = zip(metrics, other.metrics).map {
            MetricSamples(name: $0.name, unit: $0.unit, better: $0.better, values: $0.values + $1.values)
        }
        merged.latency.merge(other.latency)
        if let more = other.exits { merged.exits?.add(more) }
        if let more = other.guestInterrupts { merged.guestInterrupts?.add(more) }
        return merged
    }
}

enum MeasurementOutcome {
    case measured(Measurement)
    case skipped(String)
    case failed(String)
}

/// A kind of measurement: how one (system, benchmark) pair is measured once. Adding one is a file
/// with a type conforming to this and a line in `BenchmarkRunner.measurementKinds`.
protocol MeasurementKind {
    /// Whether this kind measures `benchmark` on `system` (the first kind that does, does).
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool
    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome
}

extension BenchmarkRunner {
    /// Every kind of measurement, most specific first.
    static var measurementKinds: [any MeasurementKind.Type] {
        [
            ContainerMeasurement.self, LinuxBalloonReclaimMeasurement.self, LinuxWorkloadMeasurement.self,
            LinuxBootMeasurement.self, VMBootMeasurement.self,
            VMPairMeasurement.self, PageSharingMeasurement.self, BalloonReclaimMeasurement.self,
            OvercommitMeasurement.self,
            GuestMeasurement.self,
            QEMUBootMeasurement.self,
            QEMUPairMeasurement.self, QEMUBalloonReclaimMeasurement.self, QEMUPageSharingMeasurement.self, QEMUMeasurement.self,
            NativeMeasurement.self,
        ]
    }
}

/// Everything one measurement needs: the pair, the plan, and the host's KVM.
struct MeasurementContext {
    let entry: Suite.Entry
    let plan: RunPlan
    let system: SystemDefinition
    let guestImage: [UInt8]
    let kvm: KVMSystem?
    let kvmProblem: String?

    var benchmark: BenchmarkDefinition? { BenchmarkDefinition.named(entry.id) }

    /// The job a boot of the benchmark guest (or a native run) gets, before devices and links.
    func job(repetitions: Int? = nil, warmups: Int? = nil) -> GuestJob {
        var job = GuestJob(entry, repetitions: repetitions, warmups: warmups, tscKilohertz: TSC.calibratedKilohertz)
        job.slowdownPercent = plan.slowdownPercent
        return job
    }

    /// Why the system cannot run on this host at all, or nil.
    var unavailability: String? {
        switch system.runner {
        case .native: return nil
        case .vm(.kvm, _), .vm(.kvmParavirtual, _): return kvm == nil ? (kvmProblem ?? "KVM is not available") : nil
        case .vm(.emulator, _): return nil
        case .qemu(let withKVM, _): return QEMUPeer.unavailability(kvm: withKVM)
        case .container(let shape):
            if case .failure(let problem) = ContainerRuntime.find(shape.runtime) { return problem.description }
            return nil
        }
    }

    /// The CPU of one of hvbench's VMs; nil for other systems.
    var cpu: VMBuilder.CPU? {
        switch system.runner {
        case .vm(.kvm, _): return kvm.map { .kvm($0) }
        case .vm(.kvmParavirtual, _): return kvm.map { .kvm($0, paravirtualCPU: true) }
        case .vm(.emulator(let pinned), _):
            return .emulator(pinned ?? plan.vm.emulator, codeCacheBytes: plan.vm.codeCacheBytes)
        case .native, .qemu, .container: return nil
        }
    }

    /// The engine a result names before anything ran (a measurement says what actually ran).
    var expectedEngine: String {
        switch system.runner {
        case .native, .container: return "host"
        case .vm(.kvm, _), .vm(.kvmParavirtual, _): return "kvm"
        case .vm(.emulator(let pinned), _): return "emulator-\((pinned ?? plan.vm.emulator).rawValue)"
        case .qemu(let withKVM, _): return withKVM ? "kvm" : "qemu-tcg"
        }
    }

    /// The log of this pair (or of a part of it, such as ".tap" or ".serving").
    func log(_ text: String, by runner: BenchmarkRunner, part: String = "") {
        runner.saveLog(text, system: system.name, benchmark: entry.id + part, plan)
    }
}

extension BenchmarkRunner {
    /// Reads a workload's transcript into a measurement, a skip or a failure.
    func readTranscript(
        _ console: String, _ context: MeasurementContext, tscHertz: Double, engine: String,
        privilege: (Int) -> String = { "cpl\($0)" }
    ) -> MeasurementOutcome {
        let entry = context.entry
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
            interrupts?.operations = entry.timedOperations + Int(transcript.latency.operations)
            return .measured(
                Measurement(
                    metrics: metrics, latency: transcript.latency, tscHertz: tscHertz,
                    privilege: transcript.privilegeLevel.map(privilege), engine: engine, guestInterrupts: interrupts))
        case .skipped(let reason): return .skipped(reason)
        case .failed(let reason): return .failed(reason)
        }
    }
}

extension BenchmarkRunner {
    /// Runs a workload's process (the native runner, a QEMU) under the entry's time limit, logs
    /// the command as `shown` with the process's output, and reads its console.
    /// - Parameter onLine: sees each console line first (samples are counted for the progress line anyway).
    func measureProcess(
        _ command: [String], shown: String, _ context: MeasurementContext, what: String, engine: String,
        privilege: @escaping (Int) -> String = { "cpl\($0)" }, tscHertz: Double? = nil,
        onLine: (@Sendable (String) -> Void)? = nil
    ) async -> MeasurementOutcome {
        let timeout = context.entry.timeoutSeconds
        let output: ProcessRunner.Output
        do {
            output = try await ProcessRunner.run(command[0], Array(command.dropFirst()), timeout: timeout) { line in
                onLine?(line)
                self.reportSamples(line)
            }
        } catch {
            return .failed("\(error)")
        }
        let console = output.standardOutput.joined(separator: "\n")
        context.log("$ \(shown)\n\(console)\n\(output.standardError)\n# \(output.statusDescription)\n", by: self)
        if output.timedOut { return .failed("\(what) exceeded its \(Int(timeout)) s time limit and was killed") }
        // Native, QEMU's TCG and QEMU's KVM all see the host's TSC rate (the Linux workloads
        // count nanoseconds instead).
        return readTranscript(
            console, context, tscHertz: tscHertz ?? Double(TSC.calibratedKilohertz) * 1000, engine: engine,
            privilege: privilege)
    }
}
