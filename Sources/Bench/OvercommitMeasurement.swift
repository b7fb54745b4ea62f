import Foundation
import Machine
import Results

/// mem.overcommit: `vmCount` VMs, each in a process of its own (`hvbench boot --balloon-fifo`)
/// whose guest writes a pool of `iterations` pages (mem.balloon-reclaim's guest), inside a
/// memory cgroup whose limit holds them all only if each gives half its pool back. The limit
/// comes from one VM measured alone first (cost C, pool B): `n·C − (n−1)·B/2 + B/4`, C being
/// what it was charged less page cache (which the kernel drops under the limit rather than
/// killing anything). Then twice
/// with that limit: without ballooning (the control, where the kernel's OOM killer must end a
/// VM) and with it, the host asking the running VMs for half their pools before each start, as
/// a balloon manager would, and waiting until they have given it.
enum OvercommitMeasurement: MeasurementKind {
    static let vmCount = 3

    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        GuestMeasurement.measures(system, benchmark) && benchmark?.id == "mem.overcommit"
    }

    struct Scenario {
        var alive = 0
        var killed = 0
        var peakBytes: UInt64 = 0
        var ballooningMilliseconds = 0.0
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        guard case .vm(let cpu, _) = context.system.runner else { return .failed("\(context.system.name) is not a VM") }
        guard let executable = context.plan.vmExecutable else {
            return .skipped("needs the hvbench executable to start VMs in processes of their own")
        }
        guard geteuid() == 0 else { return .skipped("making a memory cgroup needs root") }
        if cpu.usesKVM, let problem = context.unavailability { return .skipped(problem) }
        let entry = context.entry
        var job = GuestJob(bench: "mem.balloon-reclaim", iterations: entry.iterations, repetitions: 1, warmups: 0)
        job.balloon = true
        var command = [
            executable, "boot", runner.artifacts.guestImage.path, "--memory", "\(context.plan.vm.memoryMiB)", "--timeout",
            "86400", "--cmdline", job.commandLine,
        ]
        switch cpu {
        case .kvm, .kvmParavirtual: command += ["--cpu", "kvm"]
        case .emulator(let kind):
            command += ["--cpu", "emulator", "--emulator", (kind ?? context.plan.vm.emulator).rawValue]
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-overcommit-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        var log = "# \(command.joined(separator: " "))\n"
        defer { context.log(log, by: runner) }
        do {
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            let limitSeconds = entry.timeoutSeconds / 4
            let pool = UInt64(entry.iterations) * 4096
            // One VM alone: what a VM costs the cgroup with its pool written.
            let probe = try MemoryCgroup(name: "hvbench-overcommit-\(getpid())-alone")
            let alone = try CgroupVM(command: command, in: probe, scratch: scratch, index: 9)
            let ready = await waitUntil(seconds: limitSeconds) { alone.isReady || !alone.isAlive }
            try await Task.sleep(for: .milliseconds(200))
            // What cannot be dropped under the limit: the page cache the VM read first (its
            // executable, cold after a build) is charged here once and dropped when pressed.
            let (usage, cache) = (probe.usage ?? 0, probe.cache ?? 0)
            let cost = usage > cache ? usage - cache : 0
            log +=
                "# one VM alone: ready \(ready), \(usage / 1_048_576) MiB charged, \(cost / 1_048_576) MiB of it not page cache\n"
                + "\(alone.console)\n"
            alone.stop()
            probe.remove()
            guard ready, cost > pool else { return .failed("a VM alone did not get ready with its pool written") }
            let limit = UInt64(vmCount) * cost - UInt64(vmCount - 1) * pool / 2 + pool / 4
            log += "# limit \(limit / 1_048_576) MiB for \(vmCount) VMs\n"
            let without = try await run(
                command, limit: limit, pool: entry.iterations, balloon: false, scratch, limitSeconds, &log)
            let with = try await run(command, limit: limit, pool: entry.iterations, balloon: true, scratch, limitSeconds, &log)
            runner.progress(.sample)
            let guestRAM = Double(vmCount * context.plan.vm.memoryMiB)
            return .measured(
                Measurement(
                    metrics: [
                        MetricSamples(name: "vms_alive", unit: "VMs", better: .higher, values: [Double(with.alive)]),
                        MetricSamples(
                            name: "vms_alive_unballooned", unit: "VMs", better: .higher, values: [Double(without.alive)]),
                        MetricSamples(name: "peak", unit: "MiB", better: .lower, values: [Double(with.peakBytes) / 1_048_576]),
                        MetricSamples(name: "limit", unit: "MiB", better: .lower, values: [Double(limit) / 1_048_576]),
                        MetricSamples(
                            name: "ballooning_time", unit: "ms", better: .lower, values: [with.ballooningMilliseconds]),
                        MetricSamples(
                            name: "overcommit", unit: "x", better: .higher, values: [guestRAM / (Double(limit) / 1_048_576)]),
                    ], tscHertz: 1, privilege: "cpl3", engine: context.expectedEngine))
        } catch {
            return .failed("\(error)")
        }
    }

    /// The VMs started one after another in a cgroup limited to `limit`; with `balloon`, the
    /// running ones give half their pools back before each start.
    static func run(
        _ command: [String], limit: UInt64, pool: UInt64, balloon: Bool, _ scratch: URL, _ limitSeconds: Double,
        _ log: inout String
    ) async throws -> Scenario {
        let group = try MemoryCgroup(name: "hvbench-overcommit-\(getpid())-\(balloon ? "ballooned" : "unballooned")")
        var vms: [CgroupVM] = []
        defer {
            for vm in vms { vm.stop() }
            group.remove()
        }
        try group.limit(bytes: limit)
        var scenario = Scenario()
        let half = UInt32(pool / 2)
        for index in 0..<vmCount {
            if balloon && index > 0 {
                let start = MonotonicClock.nanoseconds()
                for vm in vms where vm.isAlive { vm.request(pages: half) }
                let given = await waitUntil(seconds: limitSeconds) {
                    vms.allSatisfy { !$0.isAlive || ($0.balloon?.actual == half && $0.balloon?.taken == Int(half)) }
                }
                guard given else {
                    throw BalloonReclaim.StuckBalloon(description: "the running VMs did not give half their pools")
                }
                scenario.ballooningMilliseconds += Double(MonotonicClock.nanoseconds() - start) / 1e6
            }
            let vm = try CgroupVM(command: command, in: group, scratch: scratch, index: index + (balloon ? 10 : 20))
            vms.append(vm)
            _ = await waitUntil(seconds: limitSeconds) { vm.isReady || !vm.isAlive }
        }
        // The OOM killer acts while the last pool is written: a moment more to be sure.
        try await Task.sleep(for: .milliseconds(500))
        scenario.alive = vms.filter(\.isAlive).count
        scenario.killed = vms.filter(\.wasKilled).count
        scenario.peakBytes = group.peakUsage ?? 0
        log +=
            "# \(balloon ? "with" : "without") ballooning: \(scenario.alive) of \(vmCount) alive, \(scenario.killed) killed, "
            + "peak \(scenario.peakBytes / 1_048_576) MiB, OOM kills \(group.oomKills.map(String.init) ?? "?"), "
            + String(format: "%.1f ms ballooning\n", scenario.ballooningMilliseconds)
            + vms.enumerated().map { "# VM \($0.offset + 1)\n\($0.element.console.suffix(800))\n" }.joined()
        return scenario
    }

    /// Polls `condition` every millisecond for up to `seconds`; whether it came true.
    static func waitUntil(seconds: Double, _ condition: () -> Bool) async -> Bool {
        let limit = Date().addingTimeInterval(seconds)
        while !condition() {
            guard Date() < limit else { return false }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return true
    }
}
