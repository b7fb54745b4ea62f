import Foundation
import Machine
import Results
import Synchronization
import VMM

/// The container systems: the native runner, with the job the native baseline gets, inside an
/// OCI container that crun (or runc) creates, with its own pid, mount, ipc and uts namespaces,
/// cgroup limits read back as applied, the disk image bind-mounted and the network namespace
/// joined to the run's veth path (or its own behind a bridge). container.start times whole
/// starts instead.
enum ContainerMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        system.container != nil || benchmark?.guest == .container
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        guard let shape = context.system.container else {
            return .skipped("container.start times a container's start; a VM's is vm.boot")
        }
        guard let benchmark = context.benchmark else { return .failed("unknown benchmark \(context.entry.id)") }
        if benchmark.guest == .linux {
            return .skipped("the container systems run the native runner's benchmarks; the Linux guest's run natively and in VMs")
        }
        if benchmark.id == "vm.boot" { return .skipped("no VM to boot: a container's start is container.start") }
        if benchmark.vmToVM && context.plan.network.backend != .tap {
            return .skipped("VM to VM runs over the TAP backend's bridge; --net-backend vmm has no second VM")
        }
        let runtime: ContainerRuntime
        switch ContainerRuntime.find(shape.runtime) {
        case .success(let found): runtime = found
        case .failure(let problem): return .skipped(problem.description)
        }
        ContainerCleanup.prepare()
        let rootfs: ContainerRootfs
        do { rootfs = try ContainerRootfs.make(runner: runner.artifacts.nativeRunner, named: ContainerCleanup.nextID()) } catch {
            return .failed("cannot make the container's root filesystem: \(error)")
        }
        defer { rootfs.remove() }
        if benchmark.guest == .container { return await measureStarts(context, shape, runtime, rootfs, by: runner) }

        var job = context.job()
        let attachments: Attachments
        do {
            attachments = try Attachments.open(
                context, attachment: shape.network == .bridge ? .bridgedNative : .native, job: &job)
        } catch { return error.outcome }
        defer { attachments.close() }
        if let role = benchmark.peerRole {
            if attachments.link != nil {
                job.nic = .socket
            } else {
                job.nic = .loopback
                job.loopbackPeer = role
            }
        }
        var settings = self.settings(context, shape)
        settings.networkNamespace = attachments.link?.nativeNamespace.map { "/proc/\(getpid())/task/\($0.threadID)/ns/net" }
        if let disk = attachments.disk {
            job.diskPath = ContainerRootfs.disk
            job.diskReadOnly = !disk.patterned
            settings.disk = (disk.image.path, !disk.patterned)
        }
        let run = await runOnce(context, runtime, rootfs, arguments: job.words, settings: settings, by: runner)
        if let problem = run.problem { return .failed(problem) }
        if let problem = limitsProblem(run.limitsSeen, settings, shape) { return .failed(problem) }
        let outcome = runner.readTranscript(
            run.console, context, tscHertz: Double(TSC.calibratedKilohertz) * 1000, engine: "host",
            privilege: { _ in "container-user" })
        return attachments.check(outcome, context, by: runner)
    }

    /// What the container gets: the memory a VM gets, as many CPUs of quota as it gets vCPUs
    /// (for the quota variant), and the plan's placement.
    static func settings(_ context: MeasurementContext, _ shape: ContainerShape) -> ContainerBundle.Settings {
        let plan = context.plan
        var settings = ContainerBundle.Settings(
            memoryLimitBytes: Int64(plan.vm.memoryMiB) << 20,
            cpuQuotaCPUs: shape.cpuQuota ? plan.vcpus(for: context.entry.id) : nil)
        if let program = plan.containerProgram { settings.program = program }
        if let node = plan.placement.numaNode {
            settings.memoryNodes = "\(node)"
            settings.cpus = (try? String(contentsOfFile: "/sys/devices/system/node/node\(node)/cpulist", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
        } else if let cpus = plan.placement.pinnedCPUs, !cpus.isEmpty {
            settings.cpus = cpus.prefix(plan.vcpus(for: context.entry.id)).map(String.init).joined(separator: ",")
        }
        return settings
    }

    /// Why the limits the runtime applied are not the ones asked for, or nil.
    static func limitsProblem(_ seen: [String: String]?, _ settings: ContainerBundle.Settings, _ shape: ContainerShape)
        -> String?
    {
        guard let seen else { return "the container's createRuntime hook recorded no cgroup limits" }
        let memory = seen["memory"] ?? ""
        guard Int64(memory) == settings.memoryLimitBytes else {
            return "the container's memory limit is \(memory.isEmpty ? "unset" : memory), not \(settings.memoryLimitBytes) bytes"
        }
        let period = ContainerBundle.cpuPeriodMicroseconds
        let quota = settings.cpuQuotaCPUs.map { Int64($0) * period }
        let cpu = seen["cpu"] ?? ""
        // v1: cpu.cfs_quota_us ("-1" for none); v2: cpu.max ("max 100000" for none).
        let words = cpu.split(separator: " ")
        let applied: Int64? = words.first.flatMap { $0 == "max" || $0 == "-1" ? nil : Int64($0) }
        guard words.first.map({ Int64($0) != nil || $0 == "max" }) == true, applied == quota else {
            return "the container's CPU quota is \(cpu.isEmpty ? "unreadable" : cpu), not \(quota.map(String.init) ?? "none")"
        }
        guard seen["pids"] == "\(ContainerBundle.pidsLimit)" else {
            return "the container's pids limit is \(seen["pids"] ?? "unreadable"), not \(ContainerBundle.pidsLimit)"
        }
        guard let procs = seen["procs"], !procs.isEmpty else {
            return "no process was in the container's cgroup when its limits were read"
        }
        return nil
    }

    /// One container's run, through the runtime's `run` (create, start, wait, delete).
    struct Run {
        var console = ""
        var problem: String?
        var limitsSeen: [String: String]?
        /// Nanoseconds from the runtime's start to the runner's first line.
        var toFirstLine: UInt64?
    }

    static func runOnce(
        _ context: MeasurementContext, _ runtime: ContainerRuntime, _ rootfs: ContainerRootfs, arguments: [String],
        settings: ContainerBundle.Settings, by runner: BenchmarkRunner, part: String = ""
    ) async -> Run {
        let id = ContainerCleanup.nextID()
        let bundle: ContainerBundle
        do {
            bundle = try ContainerBundle.make(
                id: id, rootfs: rootfs, arguments: arguments, settings: settings, cgroups: runtime.cgroups)
        } catch { return Run(problem: "cannot write the container's bundle: \(error)") }
        ContainerCleanup.register(bundle, runtime)
        defer { ContainerCleanup.remove(bundle, runtime) }
        let command = runtime.command(["run", "--bundle", bundle.directory, id])
        let firstLine = Mutex<UInt64?>(nil)
        let started = MonotonicClock.nanoseconds()
        let output: ProcessRunner.Output
        do {
            output = try await ProcessRunner.run(command[0], Array(command.dropFirst()), timeout: context.entry.timeoutSeconds) {
                line in
                let now = MonotonicClock.nanoseconds()
                firstLine.withLock { if $0 == nil && line.hasPrefix("HVB1 ") { $0 = now } }
                runner.reportSamples(line)
            }
        } catch {
            return Run(problem: "cannot start \(runtime.kind.rawValue): \(error)")
        }
        var run = Run(console: output.standardOutput.joined(separator: "\n"))
        run.toFirstLine = firstLine.withLock { $0 }.map { $0 - started }
        run.limitsSeen = bundle.limitsSeen()
        let configuration = (try? String(contentsOfFile: "\(bundle.directory)/config.json", encoding: .utf8)) ?? ""
        context.log(
            "$ \(command.joined(separator: " "))\n# config.json\n\(configuration)\n\(run.console)\n\(output.standardError)\n# \(output.statusDescription)\n"
                + (run.limitsSeen.map {
                    "# limits applied: \($0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))\n"
                } ?? ""),
            by: runner, part: part)
        if output.timedOut {
            run.problem = "the container exceeded its \(Int(context.entry.timeoutSeconds)) s time limit and was killed"
        } else if !run.console.contains("HVB1 ") {
            // The runner never ran (what it prints, failures included, starts so): the runtime
            // could not start it, and its own message says why.
            let message = output.standardError.split(separator: "\n").last.map(String.init) ?? output.statusDescription
            run.problem = "\(runtime.kind.rawValue) could not start the container: \(message)"
        }
        return run
    }

    /// container.start: one container per sample, timed from the runtime's start to the
    /// runner's first line (its hello) inside the container.
    static func measureStarts(
        _ context: MeasurementContext, _ shape: ContainerShape, _ runtime: ContainerRuntime, _ rootfs: ContainerRootfs,
        by runner: BenchmarkRunner
    ) async -> MeasurementOutcome {
        let entry = context.entry
        var settings = self.settings(context, shape)
        settings.recordLimits = false
        var milliseconds: [Double] = []
        for start in 0..<entry.boots {
            let run = await runOnce(
                context, runtime, rootfs, arguments: context.job(repetitions: 1, warmups: 0).words, settings: settings,
                by: runner)
            if let problem = run.problem { return .failed("start \(start): \(problem)") }
            guard let toFirstLine = run.toFirstLine, run.console.contains("HVB1 end bench=\(entry.id)") else {
                return .failed("start \(start): the runner did not confirm the start:\n\(run.console)")
            }
            if start >= entry.warmups {
                milliseconds.append(Double(toFirstLine) / 1e6)
                runner.progress(.sample)
            }
        }
        return .measured(
            Measurement(
                metrics: MetricDerivation.startMetrics(milliseconds), tscHertz: 1, privilege: "container-user", engine: "host"))
    }
}
