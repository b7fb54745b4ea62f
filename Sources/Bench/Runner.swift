import Foundation
import KVM
import Logging
import Machine

/// The systems a run can measure. VM modes are presets over the CPU engine and the I/O devices.
public enum SystemKind: String, CaseIterable, Sendable, Codable {
    case native
    case hardwareAssist = "hardware-assist"
    case fullEmulation = "full-emulation"
    case paravirtIO = "paravirt-io"

    /// Modes this build can run. The others are declared so the CLI can say why they are refused.
    public static let implemented: [SystemKind] = [.hardwareAssist, .native]

    public var notImplementedReason: String? {
        switch self {
        case .native, .hardwareAssist: return nil
        case .fullEmulation: return "mode 'full-emulation' needs hvbench's x86-64 emulator, which this build does not have yet"
        case .paravirtIO: return "mode 'paravirt-io' needs the virtio devices, which this build does not have yet"
        }
    }
}

public struct RunConfiguration: Sendable {
    public var systems: [SystemKind]
    public var suite: Suite
    public var outputDirectory: URL
    public var numaNode: Int?
    public var memoryMiB: Int = 256
    /// Extra integer work per iteration inside the guest and native workloads (self-check of
    /// regression detection); 0 in normal runs.
    public var slowdown: UInt64 = 0

    public init(systems: [SystemKind], suite: Suite, outputDirectory: URL, numaNode: Int? = nil) {
        self.systems = systems
        self.suite = suite
        self.outputDirectory = outputDirectory
        self.numaNode = numaNode
    }
}

public enum ProgressEvent: Sendable {
    case starting(system: String, benchmark: String, index: Int, total: Int)
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

    public func run(_ configuration: RunConfiguration) async -> [BenchmarkResult] {
        var results: [BenchmarkResult] = []
        let total = configuration.systems.count * configuration.suite.entries.count
        var index = 0
        var kvm: KVMSystem?
        var kvmProblem: String?
        if configuration.systems.contains(.hardwareAssist) {
            do { kvm = try KVMSystem() } catch {
                kvmProblem = "\(error)"
                progress(.notice("hardware-assist skipped: \(error)"))
            }
        }
        let guestImage = (try? Data(contentsOf: artifacts.guestImage)).map { [UInt8]($0) } ?? []
        for system in configuration.systems {
            for entry in configuration.suite.entries {
                index += 1
                progress(.starting(system: system.rawValue, benchmark: entry.id, index: index, total: total))
                let started = MonotonicClock.nanoseconds()
                var result: BenchmarkResult
                switch system {
                case .native:
                    result = await runNative(entry, configuration)
                case .hardwareAssist:
                    if let kvm {
                        result = runGuest(entry, configuration, kernel: guestImage, kvm: kvm, system: system)
                    } else {
                        result = BenchmarkResult(
                            system: system.rawValue, benchmark: entry.id, status: .skipped, reason: kvmProblem)
                    }
                case .fullEmulation, .paravirtIO:
                    result = BenchmarkResult(
                        system: system.rawValue, benchmark: entry.id, status: .skipped, reason: system.notImplementedReason)
                }
                result.wallSeconds = Double(MonotonicClock.nanoseconds() - started) / 1e9
                progress(.finished(result))
                results.append(result)
            }
        }
        return results
    }

    func jobWords(_ entry: Suite.Entry, _ configuration: RunConfiguration, repetitions: Int, warmups: Int, tscKHz: Int)
        -> [String]
    {
        var words = [
            "bench=\(entry.id)", "iterations=\(entry.iterations)", "repetitions=\(repetitions)", "warmups=\(warmups)",
            "tsc_khz=\(tscKHz)",
        ]
        if let size = entry.sizeBytes { words.append("size=\(size)") }
        if configuration.slowdown > 0 { words.append("slowdown=\(configuration.slowdown)") }
        return words
    }

    private func saveLog(_ text: String, system: String, benchmark: String, _ configuration: RunConfiguration) {
        let url = configuration.outputDirectory.appendingPathComponent("logs/\(system)/\(benchmark).log")
        try? writeAtomically(Data(text.utf8), to: url)
    }

    // MARK: native

    private func runNative(_ entry: Suite.Entry, _ configuration: RunConfiguration) async -> BenchmarkResult {
        let system = SystemKind.native.rawValue
        var result = BenchmarkResult(
            system: system, benchmark: entry.id, engine: "host", status: .failed, iterations: entry.iterations,
            repetitions: entry.repetitions, warmups: entry.warmups)
        let words = jobWords(
            entry, configuration, repetitions: entry.repetitions, warmups: entry.warmups, tscKHz: TSC.calibratedKilohertz)
        var runner = [artifacts.nativeRunner.path] + words
        if let node = configuration.numaNode {
            // Same placement as the VM: run the native process on the node's CPUs and memory.
            guard let numactl = ProcessRunner.find("numactl") else {
                result.reason = "numactl is not installed, so the native run cannot be bound to NUMA node \(node) (apt-get install numactl)"
                return result
            }
            runner = [numactl, "--cpunodebind=\(node)", "--membind=\(node)"] + runner
        }
        let output: ProcessRunner.Output
        do {
            output = try await ProcessRunner.run(runner[0], Array(runner.dropFirst()), timeout: entry.timeoutSeconds)
        } catch {
            result.reason = "\(error)"
            return result
        }
        let console = output.standardOutput.joined(separator: "\n")
        saveLog(
            "$ \(runner.joined(separator: " "))\n\(console)\n\(output.standardError)\n# \(output.statusDescription)\n",
            system: system, benchmark: entry.id, configuration)
        if output.timedOut {
            result.reason = "native run exceeded its \(Int(entry.timeoutSeconds)) s time limit and was killed"
            return result
        }
        return fill(
            result, console: console, tscHertz: Double(TSC.calibratedKilohertz) * 1000, privilegeLabel: { _ in "host-user" })
    }

    // MARK: guest

    private func runGuest(
        _ entry: Suite.Entry, _ configuration: RunConfiguration, kernel: [UInt8], kvm: KVMSystem, system: SystemKind
    )
        -> BenchmarkResult
    {
        var result = BenchmarkResult(
            system: system.rawValue, benchmark: entry.id, engine: "kvm", status: .failed, iterations: entry.iterations,
            repetitions: entry.repetitions, warmups: entry.warmups)
        if entry.id == "vm.boot" { return runBootBenchmark(entry, configuration, kernel: kernel, kvm: kvm, result: result) }
        let commandLine: String
        let boot: VMLauncher.Boot
        switch bootGuest(entry, configuration, kernel: kernel, kvm: kvm, repetitions: entry.repetitions, warmups: entry.warmups) {
        case .success(let started): (commandLine, boot) = started
        case .failure(let problem):
            result.reason = problem.description
            return result
        }
        result.exits = boot.outcome.counters
        saveLog(
            "# cmdline: \(commandLine)\n\(boot.console)\n# \(boot.outcome.ending.summary)\n", system: system.rawValue,
            benchmark: entry.id,
            configuration)
        result = fill(
            result, console: boot.console, tscHertz: Double(boot.guestTSCKilohertz) * 1000, privilegeLabel: { "cpl\($0)" })
        switch boot.outcome.ending {
        case .exitDevice:
            break
        case .timedOut, .failed, .halted, .shutdown:
            // The transcript may look complete, but a VM that did not exit cleanly is not trusted.
            result.status = .failed
            result.metrics = []
            result.reason = boot.outcome.ending.summary + (result.reason.map { "; guest said: \($0)" } ?? "")
        }
        return result
    }

    struct StartProblem: Error, CustomStringConvertible {
        let description: String
    }

    /// Boots one guest for `entry` under the watchdog and logs how the VM ended.
    private func bootGuest(
        _ entry: Suite.Entry, _ configuration: RunConfiguration, kernel: [UInt8], kvm: KVMSystem, repetitions: Int, warmups: Int
    ) -> Result<(commandLine: String, boot: VMLauncher.Boot), StartProblem> {
        let commandLine = jobWords(
            entry, configuration, repetitions: repetitions, warmups: warmups, tscKHz: TSC.calibratedKilohertz
        )
        .joined(separator: " ")
        do {
            let boot = try VMLauncher.boot(
                kernel: kernel, commandLine: commandLine, memoryMiB: configuration.memoryMiB, timeout: entry.timeoutSeconds,
                numaNode: configuration.numaNode, kvm: kvm)
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

    /// vm.boot: one VM per sample, timed from the start of VM construction to the guest's
    /// "main at CPL3" milestone on port 0x80.
    private func runBootBenchmark(
        _ entry: Suite.Entry, _ configuration: RunConfiguration, kernel: [UInt8], kvm: KVMSystem, result: BenchmarkResult
    )
        -> BenchmarkResult
    {
        var result = result
        var toMain: [Double] = []
        var toFirstInstruction: [Double] = []
        var exits = ExitCounters()
        var log = ""
        for boot in 0..<(entry.warmups + entry.repetitions) {
            let run: VMLauncher.Boot
            switch bootGuest(entry, configuration, kernel: kernel, kvm: kvm, repetitions: 1, warmups: 0) {
            case .success(let started): run = started.boot
            case .failure(let problem):
                result.reason = problem.description
                return result
            }
            log += "# boot \(boot)\n\(run.console)\n# \(run.outcome.ending.summary)\n"
            let start = run.outcome.startedAtNanoseconds
            guard case .exitDevice(let status) = run.outcome.ending, status == 1,
                let main = run.outcome.milestones.first(where: { $0.code == 3 }),
                let first = run.outcome.milestones.first(where: { $0.code == 1 })
            else {
                saveLog(log, system: result.system, benchmark: entry.id, configuration)
                result.reason =
                    "boot \(boot): \(run.outcome.ending.summary); milestones seen: \(run.outcome.milestones.map(\.code))"
                return result
            }
            if let level = try? BenchmarkTranscript.parse(console: run.console, bench: entry.id).privilegeLevel {
                result.privilege = "cpl\(level)"
            }
            exits = run.outcome.counters
            if boot >= entry.warmups {
                toMain.append(Double(main.nanoseconds - start) / 1e6)
                toFirstInstruction.append(Double(first.nanoseconds - start) / 1e6)
            }
        }
        saveLog(log, system: result.system, benchmark: entry.id, configuration)
        result.exits = exits
        result.status = .ok
        result.metrics = [
            Metric(MetricSamples(name: "boot_time", unit: "ms", better: .lower, values: toMain)),
            Metric(MetricSamples(name: "to_first_instruction", unit: "ms", better: .lower, values: toFirstInstruction)),
        ]
        return result
    }

    /// Turns a transcript into the result's status, privilege and metrics.
    private func fill(_ result: BenchmarkResult, console: String, tscHertz: Double, privilegeLabel: (Int) -> String)
        -> BenchmarkResult
    {
        var result = result
        let transcript: BenchmarkTranscript
        do {
            transcript = try BenchmarkTranscript.parse(console: console, bench: result.benchmark)
        } catch {
            result.status = .failed
            result.reason = "\(error)"
            return result
        }
        result.privilege = transcript.privilegeLevel.map(privilegeLabel)
        switch transcript.status {
        case .ok:
            guard transcript.samples.count == result.repetitions else {
                result.reason = "expected \(result.repetitions ?? 0) samples, got \(transcript.samples.count)"
                return result
            }
            result.status = .ok
            result.metrics = MetricDerivation.metrics(for: result.benchmark, samples: transcript.samples, tscHertz: tscHertz).map(
                Metric.init)
        case .skipped(let reason):
            result.status = .skipped
            result.reason = reason
        case .failed(let reason):
            result.status = .failed
            result.reason = reason
        }
        return result
    }
}
