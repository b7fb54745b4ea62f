import Foundation
import Machine
import Results
import VMM

/// The same guest under QEMU, one process per measurement, with the devices of the system.
enum QEMUMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool { system.isPeer }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        guard let qemu = QEMUPeer.executable else { return .skipped("qemu-system-x86_64 is not installed") }
        guard case .qemu(let kvm, let devices) = context.system.runner else {
            return .failed("\(context.system.name) is not a QEMU peer")
        }
        let (entry, plan, benchmark) = (context.entry, context.plan, context.benchmark)
        // Without hvbench's TAP link QEMU has nothing to receive from; over it, the kernel peer
        // is the source. Other reasons hold whatever the backend.
        if let why = benchmark?.qemuUnsupported, benchmark?.needsNIC != true || plan.network.backend != .tap {
            return .skipped(why)
        }
        var job = context.job()
        // --net-backend tap: the same TAP path as hvbench's VMs, QEMU started inside the namespace.
        let attachments: Attachments
        do { attachments = try Attachments.open(context, attachment: .qemu, job: &job) } catch { return error.outcome }
        defer { attachments.close() }
        let deviceArguments = QEMUPeer.deviceArguments(
            devices, nic: benchmark?.needsNIC == true, diskPath: attachments.disk?.image.path,
            diskReadOnly: attachments.disk?.patterned == false,
            tapInterface: attachments.link == nil ? nil : TAPLink.interface, balloon: benchmark?.needsBalloon == true, job: &job)
        let arguments =
            QEMUPeer.arguments(
                kvm: kvm, kernel: runner.artifacts.guestImage, commandLine: job.commandLine, memoryMiB: plan.vm.memoryMiB,
                vcpus: plan.vcpus(for: entry.id)) + deviceArguments
        var command = [qemu] + arguments
        if let link = attachments.link, let nsenter = ProcessRunner.find("nsenter") {
            command = [nsenter] + link.namespace.enterCommand.dropFirst() + command
        }
        // A kernel source sends once the guest has begun: QEMU attaches to the TAP only as it
        // starts, and what the TAP queued before then comes out with unfinished checksums.
        let source = attachments.link?.peer
        let outcome = await runner.measureProcess(
            command, shown: ([qemu] + arguments).joined(separator: " "), context, what: "QEMU",
            engine: context.expectedEngine,
            onLine: { line in if case .begin? = try? ResultLine.parse(line) { source?.release() } })
        return attachments.check(outcome, context, by: runner)
    }
}

/// vm.boot under QEMU: one QEMU process per boot, each timed from process start to the guest's
/// first console line (QEMU start-up and SeaBIOS included).
enum QEMUBootMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        system.isPeer && benchmark?.timing == .wholeBoots
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        guard let qemu = QEMUPeer.executable else { return .skipped("qemu-system-x86_64 is not installed") }
        guard case .qemu(let kvm, _) = context.system.runner else { return .failed("\(context.system.name) is not a QEMU peer") }
        let entry = context.entry
        var samples: [Double] = []
        for boot in 0..<entry.boots {
            let timed: (milliseconds: Double?, output: ProcessRunner.Output)
            do {
                timed = try await QEMUPeer.timeToHello(
                    qemu,
                    QEMUPeer.arguments(
                        kvm: kvm, kernel: runner.artifacts.guestImage,
                        commandLine: context.job(repetitions: 1, warmups: 0).commandLine,
                        memoryMiB: context.plan.vm.memoryMiB, vcpus: context.plan.vcpus(for: entry.id)),
                    timeout: entry.timeoutSeconds)
            } catch {
                return .failed("\(error)")
            }
            guard timed.output.exitCode == 1, let milliseconds = timed.milliseconds else {
                return .failed(
                    "boot \(boot): QEMU \(timed.output.statusDescription): \(timed.output.standardError.prefix(300))")
            }
            if boot >= entry.warmups {
                samples.append(milliseconds)
                runner.progress(.sample)
            }
        }
        return .measured(
            Measurement(
                metrics: MetricDerivation.bootMetrics(toMain: samples, toFirstInstruction: nil),
                tscHertz: Double(TSC.calibratedKilohertz) * 1000, privilege: "cpl3", engine: context.expectedEngine))
    }
}
