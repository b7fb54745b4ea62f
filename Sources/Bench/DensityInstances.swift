import Foundation
import Results
import VMM

/// Idle containers: the native runner with `serve=idle` (blocked in pause()), each in its own
/// bundle and namespaces (a network namespace of its own, empty), started detached by the
/// runtime, all sharing one read-only root filesystem.
final class IdleContainers: IdleGroup {
    private let runtime: ContainerRuntime
    private let memoryMiB: Int
    private var rootfs: ContainerRootfs?
    private var bundles: [ContainerBundle] = []
    private var pids: [pid_t] = []

    init(runtime: ContainerRuntime, memoryMiB: Int) {
        self.runtime = runtime
        self.memoryMiB = memoryMiB
    }

    func start(_ count: Int, runner: URL) throws {
        ContainerCleanup.prepare()
        let rootfs = try ContainerRootfs.make(runner: runner, named: ContainerCleanup.nextID())
        self.rootfs = rootfs
        var job = GuestJob(bench: "cpu.int", iterations: 1, repetitions: 1, warmups: 0)
        job.serve = .idle
        let settings = ContainerBundle.Settings(
            memoryLimitBytes: Int64(memoryMiB) << 20, cpuQuotaCPUs: nil, recordLimits: false)
        for index in 0..<count {
            let id = ContainerCleanup.nextID()
            let bundle = try ContainerBundle.make(
                id: id, rootfs: rootfs, arguments: job.words, settings: settings, cgroups: runtime.cgroups)
            ContainerCleanup.register(bundle, runtime)
            bundles.append(bundle)
            let started = QuickCommand.run(runtime.command(["run", "--detach", "--bundle", bundle.directory, id]))
            guard started.status == 0 else {
                throw ContainerError("\(runtime.kind.rawValue) could not start idle container \(index + 1) of \(count)")
            }
            let state = QuickCommand.run(runtime.command(["state", id]), captureOutput: true).output
            guard let object = try? JSONSerialization.jsonObject(with: Data(state.utf8)) as? [String: Any],
                let pid = (object["pid"] as? NSNumber)?.int32Value, pid > 0
            else { throw ContainerError("\(runtime.kind.rawValue) state gave no PID for \(id): \(state.prefix(200))") }
            pids.append(pid)
        }
    }

    func processIDs() -> [pid_t] { pids }

    func allAlive() -> Bool { pids.allSatisfy { kill($0, 0) == 0 } }

    func chargedBytes() -> UInt64? {
        var total: UInt64 = 0
        for bundle in bundles {
            let file = runtime.cgroups.memoryUsageFile(bundle.cgroupPath)
            guard let text = try? String(contentsOfFile: file, encoding: .utf8),
                let bytes = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines))
            else { return nil }
            total += bytes
        }
        return total
    }

    func stopAll() {
        for bundle in bundles { ContainerCleanup.remove(bundle, runtime) }
        bundles = []
        rootfs?.remove()
        rootfs = nil
    }
}

/// Idle VMs: each one of hvbench's VMs in a process of its own (`hvbench boot`), its guest the
/// serving end of a VM-to-VM round (an echo on its NIC, interrupt-driven, so it waits in hlt)
/// with the VMM's in-process peer on the other end, which sends nothing.
final class IdleVMs: IdleGroup {
    private let executable: String
    private let guest: String
    private let cpu: SystemDefinition.VMCPU
    private let devices: SystemDefinition.Devices
    private let memoryMiB: Int
    private var pids: [pid_t] = []
    private let consoles = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-density-\(getpid())")
    /// How long one VM may take to start serving: far beyond any host of this kind, only there
    /// to end a run whose VM hangs.
    static let startLimitSeconds = 300.0

    init(executable: String, guest: String, cpu: SystemDefinition.VMCPU, devices: SystemDefinition.Devices, memoryMiB: Int) {
        self.executable = executable
        self.guest = guest
        self.cpu = cpu
        self.devices = devices
        self.memoryMiB = memoryMiB
    }

    func start(_ count: Int, runner: URL) throws {
        try FileManager.default.createDirectory(at: consoles, withIntermediateDirectories: true)
        var measured = GuestJob(bench: "net.rr-irq", iterations: 1, repetitions: 1, warmups: 0)
        measured.nic = devices.guestNIC
        let job = VMPairLink.servingJob(.echo, for: measured)
        var command = [
            executable, "boot", guest, "--memory", "\(memoryMiB)", "--io", devices.rawValue, "--net-peer", "echo",
            "--timeout", "86400", "--cmdline", job.commandLine,
        ]
        switch cpu {
        case .kvm, .kvmParavirtual: command += ["--cpu", "kvm"]
        case .emulator(let kind): command += ["--cpu", "emulator"] + (kind.map { ["--emulator", $0.rawValue] } ?? [])
        }
        for index in 0..<count {
            let console = consoles.appendingPathComponent("vm-\(index).log").path
            guard let pid = QuickCommand.start(command, output: console) else {
                throw ContainerError("cannot start \(executable) for idle VM \(index + 1)")
            }
            pids.append(pid)
            let deadline = Date().addingTimeInterval(Self.startLimitSeconds)
            while true {
                let text = (try? String(contentsOfFile: console, encoding: .utf8)) ?? ""
                if text.contains("HVB1 serving") { break }
                if text.contains("HVB1 fail") || kill(pid, 0) != 0 || Date() > deadline {
                    throw ContainerError("idle VM \(index + 1) of \(count) did not start serving:\n\(text.suffix(600))")
                }
                usleep(10_000)
            }
        }
    }

    func processIDs() -> [pid_t] { pids }

    func allAlive() -> Bool { pids.allSatisfy { waitpid($0, nil, WNOHANG) == 0 } }

    func chargedBytes() -> UInt64? { nil }

    func stopAll() {
        for pid in pids { kill(pid, SIGKILL) }
        for pid in pids { _ = QuickCommand.waitForExit(pid) }
        pids = []
        try? FileManager.default.removeItem(at: consoles)
    }
}
