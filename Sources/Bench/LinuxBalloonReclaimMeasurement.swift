import Foundation
import Machine
import Results
import VMM

/// linux.balloon-reclaim: the Linux guest's own virtio_balloon driver against hvbench's device
/// (BalloonControl) or QEMU's (QMP), driven exactly as mem.balloon-reclaim drives the
/// benchmark guest's: /init loads the driver, says it is ready, and sleeps; the host asks for
/// pages and times until the driver reports them. The pages come from Linux's free memory.
enum LinuxBalloonReclaimMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        benchmark?.id == "linux.balloon-reclaim"
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        switch context.system.runner {
        case .native, .container: return .skipped("no balloon natively: the host owns all its memory")
        case .vm, .qemu: break
        }
        if let reason = LinuxBootMeasurement.cannotRunLinux(context.system) { return .skipped(reason) }
        let image: LinuxGuestBuilder.Image
        switch await LinuxGuestBuilder.measuredImage() {
        case .success(let built): image = built
        case .failure(let stop): return stop.outcome
        }
        guard image.drivers.contains("virtio_balloon") else {
            return .skipped("the Linux guest's kernel (\(image.kernelPackage)) has no virtio_balloon module")
        }
        let plan = context.plan
        let commandLine = LinuxWorkloadMeasurement.commandLine([
            "bench=\(context.entry.id)", "iterations=\(context.entry.iterations)",
        ])
        if case .qemu(let kvm, let devices) = context.system.runner {
            guard let qemu = QEMUPeer.executable else { return .skipped("qemu-system-x86_64 is not installed") }
            var unused = context.job()
            let arguments =
                QEMUPeer.arguments(
                    kvm: kvm, kernel: image.kernel, commandLine: commandLine, memoryMiB: plan.vm.memoryMiB,
                    vcpus: plan.vcpus(for: context.entry.id)) + ["-initrd", image.initramfs.path]
                + QEMUPeer.deviceArguments(devices, nic: false, diskPath: nil, balloon: true, job: &unused)
            return await QEMUBalloonReclaimMeasurement.drive(
                qemu, arguments, memoryMiB: plan.vm.memoryMiB, context, by: runner, privilege: "cpl0", refillsSaid: false)
        }
        guard let cpu = context.cpu, let devices = context.system.devices else {
            return .failed("\(context.system.name) cannot boot a Linux guest")
        }
        let kernel: [UInt8]
        let initrd: [UInt8]
        do { (kernel, initrd) = try image.bytes() } catch { return .failed("reading the Linux guest: \(error)") }
        let control = BalloonControl()
        var io = plan.vm.io(devices, disk: nil, peer: nil)
        io.balloon = control
        let guest = HostDrivenGuest(readyLine: BalloonReclaimMeasurement.readyLine)
        guest.boot(
            VMDescription(
                kernel: kernel, commandLine: commandLine, memoryMiB: plan.vm.memoryMiB, cpu: cpu,
                vcpus: plan.vcpus(for: context.entry.id), io: io, numaNode: plan.placement.numaNode,
                pinnedCPUs: plan.placement.pinnedCPUs, initrd: initrd), timeout: context.entry.timeoutSeconds, by: runner,
            thread: "hvb-linux-balloon")
        return await BalloonReclaimMeasurement.drive(
            guest, control, context, by: runner,
            header: "# \(image.kernelPackage), initramfs \(image.initramfs.path)\n# cmdline: \(commandLine)\n", privilege: "cpl0",
            refillsSaid: false)
    }
}
