import ArgumentParser
import Bench
import Results
import Foundation
import KVM
import Machine
import VMM
import X86

struct BootCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Boot any PVH or Multiboot v1 kernel under hvbench's VMM, console on stdout.",
        discussion: """
            A kernel built for `qemu-system-x86_64 -kernel K -device isa-debug-exit,iobase=0xf4 -serial stdio`
            runs unchanged. Exit status: the guest's port-0xF4 status ((value << 1) | 1), 0 when the guest
            halts, 124 when the watchdog stops it, 125 when the VM fails (triple fault, KVM error).
            """)

    @Argument(
        help:
            "Kernel image: a Linux bzImage, an ELF with a PVH entry note (e.g. a vmlinux), a Multiboot v1 kernel, or 'linux' for hvbench's Linux guest (Debian's kernel and a busybox initramfs, built on first use)."
    )
    var kernel: String

    @Option(help: "An initial RAM disk (initramfs) for a bzImage or PVH kernel.")
    var initrd: String?

    @Option(help: "Kernel command line.")
    var cmdline: String = ""

    @Option(help: "Guest RAM in MiB.")
    var memory: Int = 256

    @Flag(
        help:
            "With 'linux': the initramfs also carries fio and iperf3 and their libraries (about 85 MB; give the guest --memory 1024)."
    )
    var withWorkloads = false

    @Option(help: "Seconds before the watchdog stops the guest.")
    var timeout: Double = 60

    @Option(help: "CPU engine: kvm, or emulator (hvbench's x86-64 emulator, no /dev/kvm needed).")
    var cpu: CPUChoice = .kvm

    @Option(help: "How the emulator runs guest code: translate (binary translation, the default) or interpret.")
    var emulator: EmulatorKind = .translate

    @Option(help: "I/O devices: none, legacy (e1000 + IDE) or virtio (virtio-net + virtio-blk).")
    var io: BootDeviceChoice = .none

    @Option(
        name: .customLong("disk-image"),
        help: "An existing raw disk image for the disk device; the guest may write to it (create one with: truncate -s 64M FILE)."
    )
    var diskImage: String?

    @Option(
        name: .customLong("net-peer"), help: "What the VMM's network peer does with the guest's frames: sink, source or echo.")
    var netPeer: NetworkPeer.Mode = .sink

    func validate() throws {
        guard VMBuilder.memoryRangeMiB.contains(memory) else {
            throw ValidationError(
                "--memory must be between \(VMBuilder.memoryRangeMiB.lowerBound) and \(VMBuilder.memoryRangeMiB.upperBound) MiB"
            )
        }
        if let problem = Limits.check(timeout, in: Limits.timeoutSeconds, "--timeout (seconds)")
            ?? Limits.check(ioPollMicroseconds, in: DoorbellPolling.limitMicroseconds, "--io-poll-us")
            ?? Limits.check(vcpus, in: 1...FirmwareTables.maximumCPUs, "--vcpus")
            ?? pin.flatMap(CPUList.problem)
        {
            throw ValidationError(problem)
        }
    }

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
        name: .customLong("vcpus"),
        help:
            "vCPUs (KVM or the emulator). The firmware's MP and ACPI tables list them; the guest starts the others with INIT-SIPI-SIPI."
    )
    var vcpus = 1

    @Option(name: .customLong("pin"), help: "Pin vCPU thread i to host CPU i mod the list, e.g. 1 or 0,1.")
    var pin: String?

    @Option(
        name: .customLong("balloon-fifo"),
        help:
            "Give the VM a virtio-balloon and take its targets as lines 'pages N' from this FIFO; what it holds is printed as 'hvbench-boot: balloon actual=A taken=T'."
    )
    var balloonFIFO: String?

    func run() async throws {
        var kernel = self.kernel
        var initrd = self.initrd
        if kernel == "linux" && !FileManager.default.fileExists(atPath: kernel) {
            do {
                let image = try await LinuxGuestBuilder(workspace: try Workspace.locate(), withWorkloads: withWorkloads).build()
                printError("Linux guest: \(image.kernelPackage), initramfs \(image.initramfs.path)")
                if withWorkloads && image.programs.count < LinuxGuestPrograms.names.count {
                    printError(
                        "Linux guest: carries \(image.programs) of \(LinuxGuestPrograms.names): install the others (scripts/setup --with-linux)"
                    )
                }
                kernel = image.kernel.path
                initrd = initrd ?? image.initramfs.path
            } catch {
                printError("cannot build the Linux guest: \(error)")
                throw ExitCode(2)
            }
        }
        guard let data = FileManager.default.contents(atPath: kernel) else {
            printError("cannot read kernel '\(kernel)'")
            throw ExitCode(2)
        }
        var initrdBytes: [UInt8]?
        if let initrd {
            guard let bytes = FileManager.default.contents(atPath: initrd) else {
                printError("cannot read initrd '\(initrd)'")
                throw ExitCode(2)
            }
            initrdBytes = [UInt8](bytes)
        }
        let boot: VMBuilder.Boot
        do {
            let engine: VMBuilder.CPU = cpu == .emulator ? .emulator(emulator) : .kvm(try KVMSystem())
            var devices: IOConfiguration?
            if let kind = SystemDefinition.Devices(rawValue: io.rawValue) {
                let disk = try diskImage.map { try DiskImage(path: $0, access: .readWrite) }
                devices = IOConfiguration(
                    kind: kind, disk: disk, peer: NetworkPeer(mode: netPeer), ioThread: !noIOThread,
                    ioThreadPollMicroseconds: ioPollMicroseconds)
            }
            if let balloonFIFO {
                let control = BalloonControl()
                devices = devices ?? IOConfiguration(kind: .virtio, disk: nil, peer: nil)
                devices?.balloon = control
                try BalloonFIFO.serve(balloonFIFO, control)
            }
            let pinnedCPUs = pin.flatMap(CPUList.parse)
            if let pinnedCPUs { try NUMAPlacement.validate(cpus: pinnedCPUs) }
            boot = try VMBuilder.boot(
                VMDescription(
                    kernel: [UInt8](data), commandLine: cmdline, memoryMiB: memory, cpu: engine, vcpus: vcpus, io: devices,
                    pinnedCPUs: pinnedCPUs, initrd: initrdBytes), timeout: timeout, echoConsole: true)
            for problem in boot.brokenDevices { printError("device error: \(problem)") }
            for finding in boot.engineDiagnostics { printError(finding) }
            if let retired = boot.instructionsRetired {
                let seconds = Double(boot.outcome.endedAtNanoseconds - boot.outcome.startedAtNanoseconds) / 1e9
                printError(String(format: "emulator: %llu guest instructions in %.3f s", retired, seconds))
            }
        } catch let error as BootError {
            // A loader's error names what is wrong; the user needs to know which file it is about.
            printError("\(kernel)\(initrd.map { " with initrd \($0)" } ?? ""): \(error)")
            throw ExitCode(2)
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        switch boot.outcome.ending {
        case .exitDevice(let status):
            throw ExitCode(status)
        case .halted, .poweredOff:
            printError(boot.outcome.ending.summary)
        case .timedOut:
            printError(boot.outcome.ending.summary)
            throw ExitCode(124)
        case .shutdown, .failed, .stoppedByHost, .reset:
            printError(boot.outcome.ending.summary)
            throw ExitCode(125)
        }
    }
}
