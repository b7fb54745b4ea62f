import Foundation

/// results.json, schemaVersion 2 (documented in docs/results-schema.md); version 1 files (no
/// rounds) are read as well.
public struct RunResults: Codable, Sendable {
    public static let currentSchemaVersion = 2
    public static let readableSchemaVersions = 1...2

    public var schemaVersion: Int
    public var tool: ToolInfo
    public var startedAt: String
    public var suite: String?
    public var environment: EnvironmentRecord
    /// Merged reports: the environment of every host, keyed by the prefix its systems carry.
    public var hosts: [String: EnvironmentRecord]?
    public var results: [BenchmarkResult]
    /// "% of native" and mode ratios with CIs; recomputed whenever the file is written.
    public var derived: [DerivedFigure]?
    /// `--inject-slowdown`: every timed repetition was made this many percent longer on purpose
    /// (absent in real runs). Reports warn about it and `baseline save` refuses such a run.
    public var injectedSlowdownPercent: UInt64?
    /// The rounds, their seed and the order everything ran in (absent in version 1 files).
    public var schedule: Schedule?
    /// The host id the run was filed under (`run --host-id`, `$HVBENCH_HOST_ID`); absent means
    /// hostname and KVM module. A fleet names its hosts; a store keeps runs per host id.
    public var hostID: String?

    /// The warning every report shows for a deliberately slowed run; nil for a real run.
    public var slowdownWarning: String? {
        guard let percent = injectedSlowdownPercent, percent > 0 else { return nil }
        return "This run was slowed down on purpose (--inject-slowdown \(percent)): every timed repetition is \(percent)% "
            + "longer than measured. It tests regression detection; its figures are not this host's performance."
    }

    public init(tool: ToolInfo, startedAt: Date, suite: String?, environment: EnvironmentRecord, results: [BenchmarkResult]) {
        schemaVersion = Self.currentSchemaVersion
        self.tool = tool
        self.startedAt = ISO8601DateFormatter().string(from: startedAt)
        self.suite = suite
        self.environment = environment
        self.results = results
    }

    public struct ReadError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Reads a results file, refusing other schema versions and corrupt files with a clear error.
    public static func load(from url: URL) throws -> RunResults {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ReadError(description: "\(url.path): cannot read the file")
        }
        return try decode(data, source: url.path)
    }

    /// Reads results from bytes; `source` names them in errors (a path).
    public static func decode(_ data: Data, source: String) throws -> RunResults {
        struct VersionProbe: Decodable { let schemaVersion: Int? }
        let probe: VersionProbe
        do {
            probe = try JSONDecoder().decode(VersionProbe.self, from: data)
        } catch {
            throw ReadError(description: "\(source): not a hvbench results file (invalid JSON: \(error.localizedDescription))")
        }
        guard let version = probe.schemaVersion else {
            throw ReadError(description: "\(source): not a hvbench results file (no schemaVersion)")
        }
        guard readableSchemaVersions.contains(version) else {
            throw ReadError(
                description:
                    "\(source): schemaVersion \(version) is not supported by this hvbench (it reads versions \(readableSchemaVersions.lowerBound) to \(readableSchemaVersions.upperBound))"
            )
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = nonFiniteStrings.decoding
        let run: RunResults
        do {
            run = try decoder.decode(RunResults.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw ReadError(description: "\(source): missing field '\(key.stringValue)' at \(Self.path(context.codingPath))")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw ReadError(
                description: "\(source): wrong type at \(Self.path(context.codingPath)): \(context.debugDescription)")
        } catch {
            throw ReadError(description: "\(source): corrupt results file: \(error)")
        }
        if let problem = run.firstRangeProblem() { throw ReadError(description: "\(source): \(problem)") }
        return run
    }

    /// How non-finite numbers are spelled in results.json (JSON has no literal for them). The
    /// writer and the reader share it, so every file hvbench writes, hvbench reads back.
    static let nonFiniteStrings = (
        encoding: JSONEncoder.NonConformingFloatEncodingStrategy.convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan"),
        decoding: JSONDecoder.NonConformingFloatDecodingStrategy.convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    )

    /// The first value a results file holds that no run can produce (so that reports, comparisons
    /// and claims never meet it), named by its path; nil when every value is in range.
    func firstRangeProblem() -> String? {
        if environment.pinnedCPUs?.contains(where: { $0.cpu < 0 || ($0.node ?? 0) < 0 }) == true {
            return "environment.pinnedCPUs holds a negative CPU or node"
        }
        for (index, result) in results.enumerated() {
            let at = "results[\(index)] (\(result.system) \(result.benchmark))"
            if let repetitions = result.repetitions, !(0...Limits.repetitions.upperBound * 1000).contains(repetitions) {
                return "\(at).repetitions \(repetitions) is out of range"
            }
            if let warmups = result.warmups, !Limits.warmups.contains(warmups) {
                return "\(at).warmups \(warmups) is out of range"
            }
            if let rounds = result.rounds, rounds < 1 { return "\(at).rounds \(rounds) is out of range" }
            // KVM's own limit on vCPUs per VM.
            if let vcpus = result.vcpus, !(1...1024).contains(vcpus) { return "\(at).vcpus \(vcpus) is out of range" }
            if let backend = result.netBackend, !["vmm", "tap"].contains(backend) {
                return "\(at).netBackend \"\(backend)\" is not vmm or tap"
            }
            if let wall = result.wallSeconds, !(wall.isFinite && wall >= 0) { return "\(at).wallSeconds \(wall) is out of range" }
            if let exits = result.exits {
                let counts = [
                    exits.portIO, exits.mmio, exits.halts, exits.interruptions, exits.unclaimedPortReads,
                    exits.unclaimedMMIOReads, exits.notifications, exits.operations,
                ]
                let optionalCounts = [
                    exits.interrupts, exits.endOfInterrupts, exits.interruptCauseReads, exits.ioThreadNotifications,
                    exits.interruptsByEventFD, exits.coalescedWrites, exits.ioThreadPolledNotifications,
                ]
                if (counts + optionalCounts.compactMap { $0 }).contains(where: { $0 < 0 }) {
                    return "\(at).exits holds a negative count"
                }
                if let perVCPU = exits.perVCPU {
                    // KVM's own limit on vCPUs per VM.
                    if !(1...1024).contains(perVCPU.count) { return "\(at).exits.perVCPU lists \(perVCPU.count) vCPUs" }
                    if perVCPU.contains(where: { $0.counts.contains { $0 < 0 } }) {
                        return "\(at).exits.perVCPU holds a negative count"
                    }
                }
            }
            if let counts = result.guestInterrupts,
                counts.taken < 0 || counts.spurious < 0 || counts.spurious > counts.taken || counts.operations < 0
            {
                return "\(at).guestInterrupts is out of range"
            }
            for (metricIndex, metric) in result.metrics.enumerated() {
                let field = "\(at).metrics[\(metricIndex)] (\(metric.name))"
                if result.status == .ok && metric.samples.isEmpty { return "\(field) of an ok result has no samples" }
                if metric.samples.contains(where: { !$0.isFinite }) { return "\(field) holds a non-finite sample" }
                if metric.roundValues?.contains(where: { !$0.isFinite }) == true {
                    return "\(field) holds a non-finite round value"
                }
            }
        }
        return nil
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = Self.nonFiniteStrings.encoding
        return try encoder.encode(self)
    }
}

public struct ToolInfo: Codable, Sendable {
    public var name = "hvbench"
    public var version: String
    public var gitCommit: String?

    public init(version: String, gitCommit: String?) {
        self.version = version
        self.gitCommit = gitCommit
    }
}

public enum ResultStatus: String, Codable, Sendable { case ok, failed, skipped }

/// One (system, benchmark) pair.
public struct BenchmarkResult: Codable, Sendable {
    public var system: String
    public var benchmark: String
    /// Where the measured loop ran: "cpl3" in the guest, "host-user" natively.
    public var privilege: String?
    /// "kvm", "emulator-translate", "emulator-interpret", "qemu-tcg" or "host".
    public var engine: String?
    public var status: ResultStatus
    public var reason: String?
    public var iterations: UInt64?
    public var repetitions: Int?
    public var warmups: Int?
    public var metrics: [Metric]
    /// VM exits seen by the VMM during the whole boot (all repetitions), when a VM ran.
    public var exits: ExitCounters?
    /// Device interrupts the guest's handlers counted (the -irq variants), on any system.
    public var guestInterrupts: GuestInterruptCounts?
    /// Host wall-clock seconds for the whole benchmark (build of the VM, boot, run, teardown).
    public var wallSeconds: Double?
    /// Guest boots (or native processes) whose samples were merged; > 1 in adaptive runs.
    public var rounds: Int?
    /// Adaptive runs: whether the CI target was reached within the budget.
    public var ciTargetMet: Bool?
    /// The vCPUs of the guest that measured it (`--vcpus`, or the benchmark's minimum): nil
    /// natively and in older files.
    public var vcpus: Int?
    /// Network benchmarks in hvbench's VMs: the far end, "vmm" (the in-VMM peer) or "tap" (a TAP
    /// device and a kernel socket); nil elsewhere and in older files.
    public var netBackend: String?

    public init(
        system: String, benchmark: String, privilege: String? = nil, engine: String? = nil, status: ResultStatus,
        reason: String? = nil, iterations: UInt64? = nil, repetitions: Int? = nil, warmups: Int? = nil, metrics: [Metric] = [],
        exits: ExitCounters? = nil, wallSeconds: Double? = nil
    ) {
        self.system = system
        self.benchmark = benchmark
        self.privilege = privilege
        self.engine = engine
        self.status = status
        self.reason = reason
        self.iterations = iterations
        self.repetitions = repetitions
        self.warmups = warmups
        self.metrics = metrics
        self.exits = exits
        self.wallSeconds = wallSeconds
    }
}

public struct Metric: Codable, Sendable {
    public var name: String
    public var unit: String
    public var better: Better
    /// Every measured repetition, of every round.
    public var samples: [Double]
    /// Runs of several rounds: the median of each round's repetitions, in round order.
    public var roundValues: [Double]?
    /// Across rounds when there are several (the unit of replication), else across repetitions.
    public var summary: Summary

    public init(_ samples: MetricSamples, roundValues: [Double]? = nil) {
        name = samples.name
        unit = samples.unit
        better = samples.better
        self.samples = samples.values
        self.roundValues = roundValues
        summary = Summary(roundValues.flatMap { $0.count > 1 ? $0 : nil } ?? samples.values)
    }

    /// What statistics compare: the per-round values when there are several rounds, else the
    /// repetitions.
    public var replicates: [Double] { roundValues.flatMap { $0.count > 1 ? $0 : nil } ?? samples }
}

extension RunResults {
    /// 100 = native speed; below 100 = slower than native. Higher-is-better metrics divide VM by
    /// native, lower-is-better ones native by VM, so the figure always reads the same way.
    public func percentOfNative(system: String, benchmark: String, metric: Metric) -> Double? {
        let (host, mode) = Self.split(system)
        guard !SystemRegistry.isBaseline(mode),
            let nativeResult = results.first(where: {
                $0.benchmark == benchmark && $0.status == .ok && Self.split($0.system) == (host, SystemDefinition.native.name)
            }),
            let native = nativeResult.metrics.first(where: { $0.name == metric.name }),
            native.summary.median > 0, metric.summary.median > 0
        else { return nil }
        // Paired by round when both come from the same rounds (`Metric.ratio(to:)`).
        switch metric.better {
        case .higher: return metric.ratio(to: native).map { $0.ratio * 100 }
        case .lower: return native.ratio(to: metric).map { $0.ratio * 100 }
        }
    }
}

extension RunResults {
    /// Loads a results file, or the results.json inside a run folder.
    public static func load(path: String) throws -> RunResults {
        var isDirectory: ObjCBool = false
        let url = URL(fileURLWithPath: path)
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            return try load(from: url.appendingPathComponent("results.json"))
        }
        return try load(from: url)
    }

    /// Puts several runs side by side: every system becomes "<host>/<system>" and each host's
    /// environment is kept under `hosts`. A host that appears twice gets "#2", "#3", ...
    public static func merge(_ runs: [RunResults]) -> RunResults {
        guard runs.count > 1, var merged = runs.first else { return runs.first! }
        // Runs of one host (e.g. its quick, net and disk suites) that measured different
        // (system, benchmark) pairs combine into one run; anything else goes side by side.
        let sameHost = runs.allSatisfy {
            $0.environment.hostname == merged.environment.hostname && $0.environment.cpuModel == merged.environment.cpuModel
                && $0.environment.kvm.module == merged.environment.kvm.module
        }
        let pairs = runs.flatMap { $0.results.map { "\($0.system) \($0.benchmark)" } }
        if sameHost && Set(pairs).count == pairs.count {
            merged.results = runs.flatMap(\.results)
            merged.startedAt = runs.map(\.startedAt).min() ?? merged.startedAt
            merged.suite = Array(Set(runs.compactMap(\.suite))).sorted().joined(separator: "+")
            merged.derived = nil
            merged.injectedSlowdownPercent = runs.compactMap(\.injectedSlowdownPercent).max()
            merged.schedule = nil  // several runs: no single order
            return merged
        }
        var hosts: [String: EnvironmentRecord] = [:]
        var results: [BenchmarkResult] = []
        for run in runs {
            var prefix = run.environment.hostname
            var copy = 2
            while hosts[prefix] != nil {
                prefix = "\(run.environment.hostname)#\(copy)"
                copy += 1
            }
            hosts[prefix] = run.environment
            for var result in run.results {
                result.system = "\(prefix)/\(result.system)"
                results.append(result)
            }
        }
        merged.hosts = hosts
        merged.results = results
        merged.injectedSlowdownPercent = runs.compactMap(\.injectedSlowdownPercent).max()
        merged.schedule = nil
        merged.startedAt = runs.map(\.startedAt).min() ?? merged.startedAt
        let suites = Array(Set(runs.compactMap(\.suite))).sorted()
        merged.suite = suites.isEmpty ? nil : suites.joined(separator: "+")
        merged.derived = nil
        return merged
    }
}
