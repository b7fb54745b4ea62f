import ArgumentParser
import Bench
import X86
import Results
import Foundation
import Logging
import Machine
import VMM
import Report

/// The options of `hvbench run`, shared with `hvbench baseline check`.
struct RunOptions: ParsableArguments {
    @Option(
        name: .long, parsing: .upToNextOption,
        help: "Modes to run: hardware-assist, paravirt-io, full-emulation, native, or all (comma-separated or repeated).")
    var mode: [ModeSelection] = [ModeSelection(argument: "all")!]

    @Option(help: "VM CPU engine, instead of --mode: kvm or emulator (with --io: the two axes the modes are presets of).")
    var cpu: CPUChoice?

    @Option(
        help:
            "How the emulator runs guest code: translate (binary translation, the default) or interpret (the reference interpreter)."
    )
    var emulator: EmulatorKind = .translate

    @Option(help: "VM devices, instead of --mode: legacy (e1000 + IDE) or virtio (virtio-net + virtio-blk).")
    var io: SystemDefinition.Devices?

    @Option(
        help:
            "Suite name in Workloads/suites (quick, cpu, net, disk) or a path to a suite YAML file (default: quick, or with --bench none)."
    )
    var suite: String?

    @Option(
        name: .long,
        help:
            "Run only this benchmark id (repeatable): the suite's entry for it, or (outside the suite, or without --suite) the catalogue's iterations, 5 repetitions, 1 warm-up, 120 s, 1 round."
    )
    var bench: [String] = []

    @Option(help: "Rounds, overriding the suite: each round runs every (system, benchmark) once, in an order shuffled per round.")
    var rounds: Int?

    @Option(help: "Seed of the per-round order (default: from the clock; recorded in results.json).")
    var seed: UInt64?

    @Option(help: "Measured repetitions per benchmark, overriding the suite.")
    var repetitions: Int?

    @Option(help: "Iterations per repetition, overriding the suite (small values make smoke runs).")
    var iterations: UInt64?

    @Option(help: "Unmeasured warm-up repetitions (whole boots for linux.boot and vm.boot), overriding the suite.")
    var warmups: Int?

    @Option(help: "Output folder (default Results/<timestamp>-<host>/).")
    var out: String?

    @Option(
        name: .customLong("numa-node"), help: "Bind guest RAM and the vCPU thread (and the native process) to this NUMA node.")
    var numaNode: Int?

    @Option(
        name: .customLong("pin"),
        help: "Pin vCPU thread i to host CPU i mod the list (and the native process to the first), e.g. 1 or 0,1.")
    var pin: String?

    @Option(
        name: .customLong("vcpus"),
        help:
            "vCPUs of each guest (every VM mode and QEMU's -smp). The SMP benchmarks use at least 2.")
    var vcpus = 1

    @Option(
        name: .customLong("sharing-vms"),
        help: "How many VMs mem.page-sharing runs side by side, their RAM offered to KSM (2-8).")
    var sharingVMs = 4

    @Option(help: "Seconds one guest or native process may run before the watchdog stops it, overriding the suite.")
    var timeout: Int?

    @Option(help: "Guest RAM in MiB.")
    var memory: Int = 256

    @Option(
        name: .customLong("disk-image"),
        help: ArgumentHelp(
            "An existing raw image for the disk benchmarks (default: a new disk.img, 64 MiB, sparse, in the output folder).",
            discussion:
                "An image hvbench did not create is opened read-only for read benchmarks; write benchmarks refuse it unless --overwrite-disk-image is given."
        ))
    var diskImage: String?

    @Flag(
        name: .customLong("overwrite-disk-image"),
        help:
            "Allow write benchmarks to overwrite the benchmark region (the first 16 MiB) of a --disk-image hvbench did not create."
    )
    var overwriteDiskImage = false

    @Flag(help: "Replace the run already in --out (only hvbench's own files there are removed).")
    var force = false

    @Flag(help: "Open the disk image with O_DIRECT (bypass the host page cache).")
    var direct = false

    @Option(name: .long, help: "Peers to run the same guest under: qemu (= qemu-tcg, qemu-kvm, qemu-kvm-virtio) or one of them.")
    var peer: [String] = []

    @Flag(help: "Keep adding rounds until the 95% CI of each median is within --target-ci (or --budget runs out).")
    var adaptive = false

    @Option(name: .customLong("target-ci"), help: "Adaptive target: CI half-width in percent of the median.")
    var targetCI: Double = 2

    @Option(help: "Adaptive budget: seconds per benchmark.")
    var budget: Double = 60

    @Flag(help: "Log each VM's ending, exit counters and boot milestones to stderr.")
    var verbose = false

    @Option(
        name: .customLong("inject-slowdown"),
        help: "Make every timed repetition this many percent slower (self-check of regression detection).")
    var injectSlowdown: UInt64 = 0

    @Option(
        name: .customLong("net-backend"),
        help:
            "The NIC benchmarks' far end: tap (a TAP device into the host kernel and a kernel UDP socket, in a network namespace of the run's own; native uses a socket across a veth pair) or vmm (the in-VMM peer, which isolates VMM and device-model cost)."
    )
    var netBackend: NetBackend = .tap

    @Flag(
        name: .customLong("no-io-thread"),
        help: "Under KVM, take virtio doorbells as vCPU exits instead of ioeventfds served by an I/O thread.")
    var noIOThread = false

    @Option(
        name: .customLong("io-poll-us"),
        help:
            "Under KVM, how long the I/O thread polls for doorbells before it sleeps, adapting up to this many microseconds (0: never polls; default 32, QEMU's poll-max-ns)."
    )
    var ioPollMicroseconds: UInt64 = DoorbellPolling.defaultLimitMicroseconds

    @Option(
        name: .customLong("store"),
        help:
            "Also record the run into a results store: sqlite (Results/results.sqlite), sqlite:PATH or postgres://user@host[:port]/db (default: $HVBENCH_STORE)."
    )
    var store: String?

    @Option(
        name: .customLong("host-id"),
        help: "The host id the run is filed under in reports and stores (default: $HVBENCH_HOST_ID, else hostname-kvmmodule).")
    var hostID: String?

    /// --host-id, else $HVBENCH_HOST_ID.
    var namedHostID: String? { hostID ?? StoreOptions.environmentHostID }
    /// --store, else $HVBENCH_STORE: where the run is also recorded.
    var namedStore: String? { store ?? StoreOptions.environmentStore }

    func validate() throws {
        var problems: [String?] = [
            namedHostID.flatMap(StoreOptions.hostIDProblem),
            repetitions.flatMap { Limits.check($0, in: Limits.repetitions, "--repetitions") },
            warmups.flatMap { Limits.check($0, in: Limits.warmups, "--warmups") },
            rounds.flatMap { Limits.check($0, in: Limits.rounds, "--rounds") },
            iterations.flatMap { Limits.check($0, in: Limits.iterations, "--iterations") },
            timeout.flatMap { Limits.check(Double($0), in: Limits.timeoutSeconds, "--timeout (seconds)") },
            Limits.check(injectSlowdown, in: Limits.slowdownPercent, "--inject-slowdown (percent)"),
            Limits.check(budget, in: Limits.budgetSeconds, "--budget (seconds)"),
            Limits.check(memory, in: VMBuilder.memoryRangeMiB, "--memory (MiB)"),
            Limits.check(ioPollMicroseconds, in: DoorbellPolling.limitMicroseconds, "--io-poll-us"),
            Limits.check(vcpus, in: 1...FirmwareTables.maximumGuestCPUs, "--vcpus"),
            Limits.check(sharingVMs, in: VMSettings.sharingVMRange, "--sharing-vms"),
        ]
        if !(targetCI > 0 && targetCI < 100) {
            problems.append("--target-ci must be between 0 and 100 percent (got \(targetCI))")
        }
        if let numaNode, numaNode < 0 { problems.append("--numa-node must not be negative (got \(numaNode))") }
        if let pin {
            if let problem = CPUList.problem(pin) { problems.append(problem) }
            if numaNode != nil { problems.append("--pin and --numa-node both place threads: give one") }
        }
        if let problem = problems.compactMap({ $0 }).first { throw ValidationError(problem) }
    }

    /// The systems of every `--mode`, each once, native first (so "% of native" can be printed
    /// as soon as VM results arrive); `--cpu` and `--io` replace the VM modes with the one VM of
    /// those axes (a named native baseline stays).
    func selectedSystems() throws -> [SystemDefinition] {
        var systems = mode.flatMap(\.systems)
        if cpu != nil || io != nil {
            let cpuAxis: SystemDefinition.VMCPU = cpu == .emulator ? .emulator(nil) : .kvm
            guard let axes = SystemRegistry.vm(cpu: cpuAxis, devices: io ?? .legacy) else {
                throw UsageError("no system has --cpu \(cpu ?? .kvm) with --io \(io ?? .legacy)")
            }
            systems = (mode.contains { $0.namesNative } ? [.native] : []) + [axes]
        }
        return systems.filter(\.isBaseline) + systems.filter { !$0.isBaseline }
    }

    /// `--peer`: `qemu` is every QEMU peer.
    static func parsePeers(_ values: [String]) throws -> [SystemDefinition] {
        var peers: [SystemDefinition] = []
        for value in values.flatMap({ $0.split(separator: ",").map(String.init) }) {
            if value == "qemu" {
                peers += SystemRegistry.peers
            } else if let peer = SystemRegistry.named(value), peer.isPeer {
                peers.append(peer)
            } else {
                throw UsageError(
                    "unknown peer '\(value)'; peers: qemu, \(SystemRegistry.peers.map(\.name).joined(separator: ", "))")
            }
        }
        return peers
    }

    /// The suite to run: `--suite` (quick by default), narrowed to `--bench` ids; `--bench`
    /// alone runs those ids with the catalogue's defaults as a suite named "bench". Then the
    /// overrides.
    func selectedSuite(_ workspace: Workspace) throws -> Suite {
        var selected: Suite
        if suite == nil && !bench.isEmpty {
            selected = Suite(name: "bench", description: "benchmarks named with --bench", entries: [])
        } else {
            selected = try Suite.load(named: suite ?? "quick", in: workspace)
        }
        if !bench.isEmpty {
            selected.entries = try bench.map { id in
                guard let definition = BenchmarkDefinition.named(id) else { throw UsageError(BenchmarkDefinition.unknown(id)) }
                return selected.entries.first { $0.id == id } ?? Suite.Entry(catalogueDefaultsFor: definition)
            }
        }
        for index in selected.entries.indices {
            if let repetitions { selected.entries[index].repetitions = repetitions }
            if let warmups { selected.entries[index].warmups = warmups }
            // A boot round times whole boots: it has no iterations to override.
            if let iterations, BenchmarkDefinition.named(selected.entries[index].id)?.timing != .wholeBoots {
                selected.entries[index].iterations = iterations
            }
            if let timeout { selected.entries[index].timeoutSeconds = Double(timeout) }
        }
        return selected
    }

    /// The run's plan, typed and complete, from the options.
    func plan(_ suite: Suite, output: URL, peers: [SystemDefinition], pinnedCPUs: [Int]?) throws -> RunPlan {
        var plan = RunPlan(systems: try selectedSystems() + peers, suite: suite, outputDirectory: output)
        plan.rounds = rounds ?? suite.rounds
        plan.seed = seed ?? UInt64(Date().timeIntervalSince1970 * 1000)
        if adaptive { plan.adaptive = AdaptivePolicy(targetRelativeHalfWidth: targetCI / 100, budgetSeconds: budget) }
        plan.placement = HostPlacement(numaNode: numaNode, pinnedCPUs: pinnedCPUs)
        plan.vm.memoryMiB = memory
        plan.vm.vcpus = vcpus
        plan.vm.sharingVMs = sharingVMs
        plan.vm.emulator = emulator
        plan.vm.ioThread = !noIOThread
        plan.vm.ioThreadPollMicroseconds = ioPollMicroseconds
        plan.disk.imagePath = diskImage
        plan.disk.overwrite = overwriteDiskImage
        plan.disk.direct = direct
        plan.network.backend = netBackend
        plan.slowdownPercent = injectSlowdown
        plan.vmExecutable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        return plan
    }

    /// Runs the configured suite and writes the run folder. Returns the results and the folder.
    func performRun() async throws -> (RunResults, URL) {
        let level: Logger.Level = verbose ? .debug : .notice
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let workspace = try Workspace.locate()
        let peers = try Self.parsePeers(peer)
        let selected = try selectedSuite(workspace)
        if let numaNode { try NUMAPlacement.validate(node: numaNode) }
        let pinnedCPUs = pin.flatMap(CPUList.parse)
        if let pinnedCPUs { try NUMAPlacement.validate(cpus: pinnedCPUs) }

        let startedAt = Date()
        let host = ProcessInfo.processInfo.hostName
        let stamp = ISO8601DateFormatter.string(from: startedAt, timeZone: .gmt, formatOptions: [.withFullDate, .withTime])
        let output = out.map { URL(fileURLWithPath: $0) } ?? workspace.results.appendingPathComponent("\(stamp)-\(host)")
        // Everything that can make the run unusable is checked before anything is measured.
        let claims = try Claim.loadAll(in: workspace)
        let regionSectors = DiskSettings.defaultRegionSectors
        if let diskImage {
            let writes = selected.entries.contains { BenchmarkDefinition.named($0.id)?.writesDisk == true }
            try BenchmarkDisk.check(
                path: diskImage, writes: writes, overwrite: overwriteDiskImage, regionSectors: regionSectors)
        }
        try RunFolder.prepare(output, replacing: force)

        let progress = ProgressPrinter()
        progress.note("building the benchmark guest and native runner (cached by source hash)")
        let artifacts = try await ArtifactBuilder(workspace: workspace).build()
        var qemuVersion: String?
        if !peers.isEmpty {
            qemuVersion = await QEMUPeer.version()
            if qemuVersion == nil {
                progress.note("QEMU (qemu-system-x86_64) is not installed: peers are skipped (apt-get install qemu-system-x86)")
            }
        }
        let environment = EnvironmentRecord.capture(
            guestImageHash: artifacts.guestImageHash, qemuVersion: qemuVersion, numaNodeUsed: numaNode, pinnedCPUs: pinnedCPUs)
        progress.note(environment.virtualizationNote)

        let plan = try plan(selected, output: output, peers: peers, pinnedCPUs: pinnedCPUs)
        let runner = BenchmarkRunner(artifacts: artifacts) { progress.handle($0) }
        let (results, schedule) = await runner.run(plan)
        progress.finish()

        var run = RunResults(
            tool: await toolInfo(workspace), startedAt: startedAt, suite: selected.name, environment: environment,
            results: results)
        run.injectedSlowdownPercent = injectSlowdown > 0 ? injectSlowdown : nil
        run.schedule = schedule
        run.hostID = namedHostID
        let files: [URL]
        do { files = try RunOutput.write(run, to: output, claims: claims) } catch {
            throw UsageError("cannot write the results into \(output.path): \(RunFolder.reason(error))")
        }
        print(TableReport.render(run))
        print("")
        for file in files { print("wrote \(file.path)") }
        print("console logs in \(output.appendingPathComponent("logs").path)")
        if let namedStore { await StoreOptions.recordAfterRun(run, folder: output, store: namedStore) }
        return (run, output)
    }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a benchmark suite in one or more modes and write the results and reports.",
        discussion: """
            Each benchmark boots a fresh guest (or starts a fresh native process). A guest that hangs is
            stopped by the watchdog after the suite's timeout and recorded as failed; the run goes on.
            Writes results.json, results.csv, summary.md and report.html into the output folder.
            Exit status: 0 when no benchmark failed, 1 when some did (results are written either way),
            2 on bad input.
            """)

    @OptionGroup var options: RunOptions

    func run() async throws {
        let run: RunResults
        do {
            (run, _) = try await options.performRun()
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        if run.results.contains(where: { $0.status == .failed }) {
            printError("some benchmarks failed; see the status column and the logs")
            throw ExitCode(1)
        }
    }
}

/// `--pin`'s list of host CPUs: comma-separated numbers.
enum CPUList {
    /// Why `text` is not a CPU list; nil when it is one.
    static func problem(_ text: String) -> String? {
        parse(text) == nil ? "--pin takes comma-separated CPU numbers, e.g. 1 or 0,1 (got '\(text)')" : nil
    }

    static func parse(_ text: String) -> [Int]? {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let cpus = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, cpus.count == parts.count, cpus.allSatisfy({ (0...4095).contains($0) }) else { return nil }
        return cpus
    }
}
