import Foundation
import KVM
import Machine
import Results
import VMM

/// linux.boot: one boot of the Linux guest per sample (Debian's kernel, the busybox initramfs),
/// timed from VM construction (hvbench's VMM) or process start (QEMU) to the console line in
/// which its /init's shell says hello (`boot_time`) and, under hvbench's VMM, to /init's boot
/// milestone 4 on port 0x80 (`to_init`; QEMU has no milestone port). The guest powers itself
/// off after `HVB1 done`.
enum LinuxBootMeasurement: MeasurementKind {
    /// The Linux command line: the console on COM1, no reboot on panic, no boot chatter, no I/O
    /// delays (Linux's default delay writes garbage to port 0x80, the milestone port), and the
    /// job /init runs (the kernel passes `bench=` to it as an environment variable).
    static let commandLine = kernelArguments + " bench=linux.boot"
    /// What every boot of the Linux guest passes before its job's words.
    static let kernelArguments = "console=ttyS0 panic=-1 quiet io_delay=none"

    /// What Workloads/linux/init writes to port 0x80 through /dev/port as it starts.
    static let initMilestone: UInt8 = 4

    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        benchmark?.guest == .linux
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        if case .native = context.system.runner {
            return .skipped("no VM to boot: linux.boot times a Linux guest's boot")
        }
        if let reason = cannotRunLinux(context.system) { return .skipped(reason) }
        let image: LinuxGuestBuilder.Image
        switch await LinuxGuestBuilder.measuredImage() {
        case .success(let built): image = built
        case .failure(let stop): return stop.outcome
        }
        // hvbench's VMM takes the files' bytes: read them once for every boot.
        var guest: (kernel: [UInt8], initrd: [UInt8])?
        if case .vm = context.system.runner {
            do {
                guest = try image.bytes()
            } catch { return .failed("reading the Linux guest: \(error)") }
        }
        var samples: [Double] = []
        var toInit: [Double] = []
        var engine = context.expectedEngine
        var log = "# \(image.kernelPackage), initramfs \(image.initramfs.path)\n"
        defer { context.log(log, by: runner) }
        for boot in 0..<context.entry.boots {
            let result: Result<Booted, LinuxBootFailure>
            if case .qemu(let kvm, _) = context.system.runner {
                result = await bootUnderQEMU(image, kvm: kvm, context)
            } else if let cpu = context.cpu, let guest {
                result = bootUnderHVBench(guest.kernel, initrd: guest.initrd, cpu: cpu, context)
            } else {
                return .failed("\(context.system.name) cannot boot a Linux guest")
            }
            switch result {
            case .success(let booted):
                log += "# boot \(boot): /init said hello after \(booted.milliseconds) ms\n\(booted.console)\n"
                // /init's own lines must say it ran the job, at CPL3.
                let transcript: BenchmarkTranscript
                do {
                    transcript = try BenchmarkTranscript.parse(console: booted.console, bench: context.entry.id)
                } catch { return .failed("boot \(boot): \(error)") }
                guard transcript.status == .ok, transcript.privilegeLevel == 3 else {
                    return .failed(
                        "boot \(boot): /init reported \(transcript.status), privilege \(transcript.privilegeLevel.map(String.init) ?? "none")"
                    )
                }
                engine = booted.engine
                if boot >= context.entry.warmups {
                    samples.append(booted.milliseconds)
                    if let milliseconds = booted.toInit { toInit.append(milliseconds) }
                    runner.progress(.sample)
                }
            case .failure(let failure):
                log += "# boot \(boot)\n\(failure.console)\n# \(failure.reason)\n"
                return .failed("boot \(boot): \(failure.reason)")
            }
        }
        var metrics = MetricDerivation.bootMetrics(toMain: samples, toFirstInstruction: nil)
        if !toInit.isEmpty && toInit.count == samples.count {
            metrics.append(MetricSamples(name: "to_init", unit: "ms", better: .lower, values: toInit))
        }
        return .measured(Measurement(metrics: metrics, tscHertz: 1, privilege: "cpl3", engine: engine))
    }

    /// Why `system` cannot run the Linux guest on this host, or nil.
    static func cannotRunLinux(_ system: SystemDefinition) -> String? {
        switch system.runner {
        case .vm(let cpu, _) where cpu.usesKVM && KVMSystem.moduleEmulatesGuestKernel:
            return "this host's KVM (kvm_pvm) emulates the guest kernel's code and cannot emulate its int3: Debian's 6.1 cloud "
                + "kernel stopped at int3_selftest 41 s into its boot under hvbench's VMM (measured, docs/linux-guest.md)"
        case .qemu(kvm: true, _) where KVMSystem.moduleEmulatesGuestKernel:
            return "this host's KVM (kvm_pvm) emulates guest kernel code: QEMU with KVM did not get through a bzImage's "
                + "real-mode setup in 120 s, and the kernel would stop at its int3 self-test (docs/linux-guest.md)"
        default: return nil
        }
    }

    /// One boot that reached /init: how long it took, the console, and the engine that ran it.
    struct Booted {
        let milliseconds: Double
        /// To /init's milestone (hvbench's VMM only).
        var toInit: Double? = nil
        let console: String
        let engine: String
    }

    struct LinuxBootFailure: Error {
        let reason: String
        let console: String
    }

    /// The time from VM construction to /init's hello, under hvbench's VMM.
    static func bootUnderHVBench(_ kernel: [UInt8], initrd: [UInt8], cpu: VMBuilder.CPU, _ context: MeasurementContext)
        -> Result<Booted, LinuxBootFailure>
    {
        let hello = FirstLineClock()
        let boot: VMBuilder.Boot
        do {
            boot = try VMBuilder.boot(
                VMDescription(
                    kernel: kernel, commandLine: commandLine, memoryMiB: context.plan.vm.memoryMiB, cpu: cpu,
                    vcpus: context.plan.vcpus(for: context.entry.id), numaNode: context.plan.placement.numaNode,
                    pinnedCPUs: context.plan.placement.pinnedCPUs, initrd: initrd),
                timeout: context.entry.timeoutSeconds,
                onConsoleLine: { if case .hello? = try? ResultLine.parse($0) { hello.mark() } })
        } catch {
            return .failure(LinuxBootFailure(reason: "could not start the VM: \(error)", console: ""))
        }
        guard let reached = hello.nanoseconds else {
            let lastLine = boot.console.split(whereSeparator: \.isNewline).last.map(String.init) ?? "(no console output)"
            return .failure(
                LinuxBootFailure(
                    reason: "the Linux guest did not reach /init: \(boot.outcome.ending.summary); last console line: \(lastLine)",
                    console: boot.console))
        }
        let initStarted = boot.outcome.milestones.first { $0.code == initMilestone }
        return .success(
            Booted(
                milliseconds: Double(reached - boot.outcome.startedAtNanoseconds) / 1e6,
                toInit: initStarted.map { Double($0.nanoseconds - boot.outcome.startedAtNanoseconds) / 1e6 },
                console: boot.console, engine: boot.engineName))
    }

    /// The time from QEMU's start to /init's hello (QEMU's own start-up included, as for vm.boot).
    static func bootUnderQEMU(_ image: LinuxGuestBuilder.Image, kvm: Bool, _ context: MeasurementContext) async
        -> Result<Booted, LinuxBootFailure>
    {
        guard let qemu = QEMUPeer.executable else {
            return .failure(LinuxBootFailure(reason: "qemu-system-x86_64 is not installed", console: ""))
        }
        let arguments =
            QEMUPeer.arguments(
                kvm: kvm, kernel: image.kernel, commandLine: commandLine, memoryMiB: context.plan.vm.memoryMiB,
                vcpus: context.plan.vcpus(for: context.entry.id)) + ["-initrd", image.initramfs.path]
        let timed: (milliseconds: Double?, output: ProcessRunner.Output)
        do {
            timed = try await QEMUPeer.timeToHello(qemu, arguments, timeout: context.entry.timeoutSeconds)
        } catch {
            return .failure(LinuxBootFailure(reason: "\(error)", console: ""))
        }
        let console = timed.output.standardOutput.joined(separator: "\n")
        guard let milliseconds = timed.milliseconds, timed.output.succeeded else {
            return .failure(
                LinuxBootFailure(
                    reason:
                        "QEMU \(timed.output.statusDescription) without /init's hello: \(timed.output.standardError.suffix(300))",
                    console: console))
        }
        return .success(Booted(milliseconds: milliseconds, console: console, engine: context.expectedEngine))
    }
}
