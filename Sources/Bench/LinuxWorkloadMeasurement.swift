import Foundation
import KVM
import Machine
import Results
import VMM

/// The Linux workloads (`linux.fio-*`, `linux.iperf3-*`, `linux.udp-rr`, the lmbench-style
/// operations, `linux.compress`): one boot of the Linux guest with its workload programs per
/// measurement, under hvbench's VMM or QEMU, with the system's disk and NIC; natively, the same
/// `hvb-job` script with the same busybox, fio, iperf3 and hvb-ops in a mount and pid namespace
/// of its own, on the same disk image and across a veth pair to the same kernel peers. Samples
/// are timed inside (nanoseconds); under hvbench's VMM the exits between /init's milestones 5
/// and 6 are the job's.
enum LinuxWorkloadMeasurement: MeasurementKind {
    /// The initramfs with fio and its libraries is about 85 MB, unpacked into the guest's RAM.
    static let minimumMemoryMiB = 1024
    static let iperf3Port = 5201

    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        benchmark?.guest == .linux && benchmark?.timing == .inGuest
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        guard let benchmark = context.benchmark else { return .failed("\(context.entry.id) is not in the catalogue") }
        if let reason = LinuxBootMeasurement.cannotRunLinux(context.system) { return .skipped(reason) }
        if benchmark.needsNIC && context.plan.network.backend != .tap {
            return .skipped("the Linux guest's network jobs talk TCP/IP to the host kernel: they need --net-backend tap")
        }
        let image: LinuxGuestBuilder.Image
        switch await LinuxGuestBuilder.measuredImage(withWorkloads: true) {
        case .success(let built): image = built
        case .failure(let stop): return stop.outcome
        }
        guard let tools = image.tools else { return .failed("the Linux guest was built without its workloads") }
        if benchmark.needsNIC, context.system.devices == .legacy, !image.drivers.contains("e1000") {
            return .skipped(
                "the Linux guest's kernel (\(image.kernelPackage)) has no e1000 driver, so it has no NIC on this system "
                    + "(Debian's generic kernel has one: HVBENCH_LINUX_KERNEL=linux-image-amd64)")
        }
        if let program = program(of: benchmark.id), !image.programs.contains(program) {
            return .skipped("\(program) is not installed on the host (scripts/setup --with-linux installs it)")
        }
        let attachment: TAPLink.Attachment
        switch context.system.runner {
        case .native: attachment = .native
        case .qemu: attachment = .qemu
        case .vm: attachment = .vmm
        case .container: return .skipped("the Linux workloads run natively and in VMs, not in containers")
        }
        var unused = context.job()
        let attachments: Attachments
        do { attachments = try Attachments.open(context, attachment: attachment, job: &unused) } catch { return error.outcome }
        defer { attachments.close() }
        var server: IPerf3Server?
        if benchmark.id.hasPrefix("linux.iperf3"), let link = attachments.link {
            switch await IPerf3Server.start(in: link, timeout: context.entry.timeoutSeconds + 30) {
            case .success(let started): server = started
            case .failure(let problem): return .failed(problem.description)
            }
        }
        var words = jobWords(context)
        if attachments.link != nil {
            words += [
                "peer=\(TAPLink.hostAddress)", "address=\(TAPLink.guestAddress)", "mac=\(TAPLink.text(TAPLink.guestMAC))",
            ]
        }
        let outcome: MeasurementOutcome
        switch context.system.runner {
        case .native, .container:
            outcome = await measureNatively(words, tools: tools, disk: attachments.disk, link: attachments.link, context, runner)
        case .qemu(let kvm, let devices):
            outcome = await measureUnderQEMU(
                words, image: image, kvm: kvm, devices: devices, attachments: attachments, context, runner)
        case .vm(_, let devices):
            outcome = measureUnderHVBench(words, image: image, devices: devices, attachments: attachments, context, runner)
        }
        if let server { context.log(await server.stop(), by: runner, part: ".iperf3-server") }
        return attachments.check(outcome, context, by: runner)
    }

    /// The program a benchmark needs besides hvb-ops and busybox.
    static func program(of benchmark: String) -> String? {
        benchmark.hasPrefix("linux.fio") ? "fio" : benchmark.hasPrefix("linux.iperf3") ? "iperf3" : nil
    }

    /// What hvb-job reads: on the kernel command line (the kernel hands them to /init as its
    /// environment) or, natively, as the environment itself.
    static func jobWords(_ context: MeasurementContext) -> [String] {
        let entry = context.entry
        let regionMiB = context.plan.disk.regionSectors * UInt64(DiskImage.sectorSize) / 1_048_576
        return [
            "bench=\(entry.id)", "iterations=\(entry.iterations)", "repetitions=\(entry.repetitions)",
            "warmups=\(entry.warmups)", "size=\(max(regionMiB, 1))m",
        ]
    }

    static func commandLine(_ words: [String]) -> String {
        ([LinuxBootMeasurement.kernelArguments] + words).joined(separator: " ")
    }

    static func memoryMiB(_ plan: RunPlan) -> Int { max(plan.vm.memoryMiB, minimumMemoryMiB) }

    private static func measureUnderHVBench(
        _ words: [String], image: LinuxGuestBuilder.Image, devices: SystemDefinition.Devices, attachments: Attachments,
        _ context: MeasurementContext, _ runner: BenchmarkRunner
    ) -> MeasurementOutcome {
        guard let cpu = context.cpu else { return .failed("\(context.system.name) is not one of hvbench's VMs") }
        let kernel: [UInt8]
        let initrd: [UInt8]
        do { (kernel, initrd) = try image.bytes() } catch { return .failed("reading the Linux guest: \(error)") }
        let plan = context.plan
        let io = plan.vm.io(devices, disk: attachments.disk?.image, peer: attachments.link?.backend)
        let commandLine = commandLine(words)
        let boot: VMBuilder.Boot
        do {
            boot = try VMBuilder.boot(
                VMDescription(
                    kernel: kernel, commandLine: commandLine, memoryMiB: memoryMiB(plan), cpu: cpu,
                    vcpus: plan.vcpus(for: context.entry.id), io: io, numaNode: plan.placement.numaNode,
                    pinnedCPUs: plan.placement.pinnedCPUs, initrd: initrd),
                timeout: context.entry.timeoutSeconds, onConsoleLine: { runner.reportSamples($0) })
        } catch {
            return .failed("could not start the VM: \(error)")
        }
        context.log(
            "# \(image.kernelPackage), initramfs \(image.initramfs.path)\n# cmdline: \(commandLine)\n\(boot.console)\n"
                + "# \(boot.outcome.ending.summary)\n" + boot.brokenDevices.map { "# device error: \($0)\n" }.joined(),
            by: runner)
        if let broken = boot.brokenDevices.first { return .failed("device error: \(broken)") }
        let outcome = runner.readTranscript(boot.console, context, tscHertz: 1e9, engine: boot.engineName)
        switch boot.outcome.ending {
        case .poweredOff: break
        default:
            // A guest that did not power itself off is not trusted, whatever it printed.
            let lastLine = boot.console.split(whereSeparator: \.isNewline).last.map(String.init) ?? "(no console output)"
            var reason = "the Linux guest \(boot.outcome.ending.summary); last console line: \(lastLine)"
            if case .failed(let guestSaid) = outcome { reason += "; it said: \(guestSaid)" }
            return .failed(reason)
        }
        guard case .measured(var measurement) = outcome else { return outcome }
        let milestones = boot.outcome.countersAtMilestones
        if let start = milestones[MilestoneProgram.workloadStarts], let end = milestones[MilestoneProgram.workloadEnds] {
            var exits = end.since(start)
            exits.operations = context.entry.timedOperations
            measurement.exits = exits
        }
        return .measured(measurement)
    }

    private static func measureUnderQEMU(
        _ words: [String], image: LinuxGuestBuilder.Image, kvm: Bool, devices: SystemDefinition.Devices,
        attachments: Attachments, _ context: MeasurementContext, _ runner: BenchmarkRunner
    ) async -> MeasurementOutcome {
        guard let qemu = QEMUPeer.executable else { return .skipped("qemu-system-x86_64 is not installed") }
        var unused = context.job()
        let arguments =
            QEMUPeer.arguments(
                kvm: kvm, kernel: image.kernel, commandLine: commandLine(words), memoryMiB: memoryMiB(context.plan),
                vcpus: context.plan.vcpus(for: context.entry.id)) + ["-initrd", image.initramfs.path]
            + QEMUPeer.deviceArguments(
                devices, nic: context.benchmark?.needsNIC == true, diskPath: attachments.disk?.image.path,
                diskReadOnly: attachments.disk?.patterned == false,
                tapInterface: attachments.link == nil ? nil : TAPLink.interface, job: &unused)
        var command = [qemu] + arguments
        if let link = attachments.link, let nsenter = ProcessRunner.find("nsenter") {
            command = [nsenter] + link.namespace.enterCommand.dropFirst() + command
        }
        return await runner.measureProcess(
            command, shown: ([qemu] + arguments).joined(separator: " "), context, what: "QEMU",
            engine: context.expectedEngine, tscHertz: 1e9)
    }

    /// hvb-job on the host: busybox's shell and applets first on PATH, fio and iperf3 from the
    /// host's own PATH (the files the guest got copies of), in new mount and pid namespaces,
    /// placed as the VMs are and, over a TAP link, in the native side's network namespace.
    private static func measureNatively(
        _ words: [String], tools: LinuxWorkloadTools, disk: BenchmarkDisk.Opened?, link: TAPLink?,
        _ context: MeasurementContext, _ runner: BenchmarkRunner
    ) async -> MeasurementOutcome {
        guard let unshare = ProcessRunner.find("unshare"), let env = ProcessRunner.find("env") else {
            return .skipped("unshare or env (util-linux, coreutils) is not installed: the native job runs in namespaces")
        }
        let hostPath = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        // Without root, a user namespace makes the mount and pid namespaces possible.
        let user = geteuid() == 0 ? [] : ["--user", "--map-root-user"]
        var environment = ["PATH=\(tools.applets.path):\(hostPath)"] + words
        if let disk { environment.append("disk=\(disk.image.path)") }
        let job =
            [unshare] + user + ["--mount", "--pid", "--fork", "--mount-proc", "--", env, "-i"] + environment
            + [tools.busybox.path, "sh", tools.job.path]
        let command: [String]
        switch NativeMeasurement.placedCommand(job, context, link: link) {
        case .success(let placed): command = placed
        case .failure(let problem): return .failed(problem.description)
        }
        return await runner.measureProcess(
            command, shown: command.joined(separator: " "), context, what: "native run", engine: "host",
            privilege: { _ in "host-user" }, tscHertz: 1e9)
    }
}
