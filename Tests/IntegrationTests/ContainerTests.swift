import Foundation
import Testing

@testable import Bench
import Results

extension Host {
    /// Why crun cannot run hvbench's containers here, or nil.
    static let containerProblem: String? = {
        if case .failure(let problem) = ContainerRuntime.find(.crun) { return problem.description }
        return nil
    }()
    static var canRunContainers: Bool { containerProblem == nil }
    static let containerSkipMessage: Comment = "needs crun, root and cgroup controllers: \(containerProblem ?? "")"
}

/// The container systems: the native runner in an OCI bundle under crun, its limits applied,
/// and nothing of it left behind, whether it ran, failed to start, or its run was killed.
/// One at a time: the leftover checks look at every container of this process.
@Suite(.serialized) struct ContainerTests {
    /// Everything of this process's containers that could be left behind: state, bundles, root
    /// filesystems and cgroups.
    static func leftovers(of pid: Int32 = getpid()) -> [String] {
        let fileManager = FileManager.default
        let mine = { (name: String) in ContainerCleanup.creator(of: name) == pid }
        var found: [String] = []
        let state = ContainerRuntime.stateDirectory
        for name in (try? fileManager.contentsOfDirectory(atPath: state)) ?? [] {
            if mine(name) { found.append("\(state)/\(name)") }
            for id in (try? fileManager.contentsOfDirectory(atPath: "\(state)/\(name)")) ?? []
            where name.hasPrefix("state-") && mine(id) {
                found.append("\(state)/\(name)/\(id)")
            }
        }
        for controller in (try? fileManager.contentsOfDirectory(atPath: CgroupLayout.root)) ?? [] {
            let top = "\(CgroupLayout.root)/\(controller)"
            for name in (try? fileManager.contentsOfDirectory(atPath: top)) ?? [] where mine(name) {
                found.append("\(top)/\(name)")
            }
        }
        return found
    }

    func run(_ system: SystemDefinition, _ ids: [String], memoryMiB: Int = 256, program: String? = nil) async throws -> (
        [BenchmarkResult], URL
    ) {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        let entries = ids.flatMap { tinySuite($0).entries }
        var plan = RunPlan(
            systems: [system], suite: Suite(name: "test", description: "", entries: entries), outputDirectory: output)
        plan.vm.memoryMiB = memoryMiB
        plan.containerProgram = program
        return (await BenchmarkRunner(artifacts: artifacts) { _ in }.run(plan).results, output)
    }

    func log(_ output: URL, _ system: String, _ benchmark: String) -> String {
        (try? String(contentsOf: output.appendingPathComponent("logs/\(system)/\(benchmark).log"), encoding: .utf8)) ?? ""
    }

    @Test(.enabled(if: Host.canRunContainers, Host.containerSkipMessage))
    func aContainerRoundRunsTheNativeRunnerWithItsLimitsAppliedAndLeavesNothing() async throws {
        var ids = ["cpu.int", "cpu.pgfault", "disk.rand-write-4k", "container.start"]
        if Host.canMakeNamespaces { ids.append("net.rr") }
        let (results, output) = try await run(.container, ids)
        defer { try? FileManager.default.removeItem(at: output) }
        for result in results {
            #expect(result.status == .ok, "\(result.benchmark): \(result.reason ?? "")")
            #expect(result.engine == "host" && result.privilege == "container-user", "\(result.benchmark)")
        }
        let start = try #require(results.first { $0.benchmark == "container.start" }?.metrics.first)
        #expect(start.name == "start_time" && start.unit == "ms" && start.samples.count == 2)
        #expect(start.samples.allSatisfy { $0 > 0 && $0 < 60_000 })
        // The createRuntime hook read the limits back from the container's own cgroup.
        let applied = log(output, "container", "cpu.int")
        #expect(applied.contains("memory=268435456"), "\(applied.suffix(400))")
        #expect(applied.contains("cpu=-1") && applied.contains("pids=64"))
        #expect(applied.contains("\"type\" : \"pid\"") && applied.contains("\"readonly\" : true"))
        // The disk benchmark wrote through the bind-mounted image, and the data check passed.
        #expect(log(output, "container", "disk.rand-write-4k").contains("/hvbench-disk.img"))
        #expect(Self.leftovers().isEmpty, "\(Self.leftovers())")
    }

    @Test(.enabled(if: Host.canRunContainers, Host.containerSkipMessage))
    func theQuotaVariantGetsItsQuotaAndTheVMsMemory() async throws {
        let (results, output) = try await run(.containerQuota, ["cpu.int", "cpu.cacheline-pingpong"], memoryMiB: 128)
        defer { try? FileManager.default.removeItem(at: output) }
        for result in results { #expect(result.status == .ok, "\(result.benchmark): \(result.reason ?? "")") }
        // One CPU of quota for a one-vCPU benchmark, two for an SMP one.
        let single = log(output, "container-quota", "cpu.int")
        #expect(single.contains("cpu=100000") && single.contains("period=100000") && single.contains("memory=134217728"))
        #expect(log(output, "container-quota", "cpu.cacheline-pingpong").contains("cpu=200000"))
        #expect(Self.leftovers().isEmpty, "\(Self.leftovers())")
    }

    @Test(.enabled(if: Host.canRunContainers, Host.containerSkipMessage))
    func aContainerThatCannotStartFailsWithTheRuntimesMessageAndLeavesNothing() async throws {
        let (results, output) = try await run(.container, ["cpu.int", "container.start"], program: "/no-such-runner")
        defer { try? FileManager.default.removeItem(at: output) }
        for result in results {
            #expect(result.status == .failed)
            let reason = result.reason ?? ""
            #expect(reason.contains("crun could not start the container") && reason.contains("no-such-runner"), "\(reason)")
        }
        #expect(Self.leftovers().isEmpty, "\(Self.leftovers())")
    }

    @Test(.enabled(if: Host.canRunContainers, Host.containerSkipMessage))
    func theOrphansOfAKilledRunAreRemovedByTheNext() async throws {
        // A PID that is gone: a process that ran and was reaped.
        let finished = try await ProcessRunner.run("/bin/true", [], timeout: 30)
        #expect(finished.succeeded)
        let gone = try #require(Self.reapedPID())
        let runtime = try ContainerRuntime.find(.crun).get()
        let artifacts = try await Built.artifacts.value
        let rootfs = try ContainerRootfs.make(runner: artifacts.nativeRunner, named: "hvbench-\(gone)-1")
        let bundle = try ContainerBundle.make(
            id: "hvbench-\(gone)-2", rootfs: rootfs, arguments: ["bench=cpu.int"],
            settings: .init(memoryLimitBytes: 64 << 20, cpuQuotaCPUs: nil, recordLimits: false), cgroups: runtime.cgroups)
        // Created but never started, as a run killed between the two would leave it: its process
        // waits inside its namespaces and cgroups.
        let created = QuickCommand.run(runtime.command(["create", "--bundle", bundle.directory, bundle.id]))
        #expect(created.status == 0)
        #expect(runtime.holds(bundle.id))
        #expect(!Self.leftovers(of: gone).isEmpty)
        let removed = ContainerCleanup.removeOrphans()
        #expect(removed.contains(bundle.id), "\(removed)")
        #expect(!runtime.holds(bundle.id))
        #expect(Self.leftovers(of: gone).isEmpty, "\(Self.leftovers(of: gone))")
    }

    /// A PID no process has now: one above this process's, checked free.
    static func reapedPID() -> Int32? {
        for candidate in stride(from: Int32(getpid()) + 100_000, to: Int32(getpid()) + 100_100, by: 1)
        where kill(candidate, 0) != 0 && errno == ESRCH {
            return candidate
        }
        return nil
    }

    @Test(.enabled(if: Host.canRunContainers, Host.containerSkipMessage))
    func anInterruptedRunDeletesItsContainerBeforeItEnds() async throws {
        let executable = try #require(CommandLineTests.executable, "the hvbench executable must be built next to the tests")
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let pid = try #require(
            QuickCommand.start([
                executable, "run", "--mode", "container", "--bench", "cpu.int", "--iterations", "100000000000", "--rounds", "1",
                "--out", output.path,
            ]))
        let deadline = Date().addingTimeInterval(300)
        let state = "\(ContainerRuntime.stateDirectory)/state-crun"
        func running() -> Bool {
            ((try? FileManager.default.contentsOfDirectory(atPath: state)) ?? []).contains {
                ContainerCleanup.creator(of: $0) == pid
            }
        }
        while !running() && kill(pid, 0) == 0 && Date() < deadline { usleep(20_000) }
        #expect(running(), "the run never started its container")
        kill(pid, SIGINT)
        let status = QuickCommand.waitForExit(pid)
        #expect(status & 0x7f == SIGINT, "hvbench ended with wait status \(status), not by SIGINT")
        #expect(Self.leftovers(of: pid).isEmpty, "\(Self.leftovers(of: pid))")
    }

    @Test(.enabled(if: Host.canRunContainers, Host.containerSkipMessage))
    func densityMeasuresIdleContainersAndIdleVMsAndStopsThem() async throws {
        let executable = try #require(CommandLineTests.executable, "the hvbench executable must be built next to the tests")
        var plan = Density.Plan(systems: [.container, .fullEmulation], counts: [2], vmExecutable: executable)
        plan.settleSeconds = 0.2
        plan.memoryMiB = 64
        let results = await Density.measure(plan, artifacts: try await Built.artifacts.value) { _ in }
        #expect(results.map(\.system) == ["container", "full-emulation"] && results.allSatisfy { $0.count == 2 })
        for result in results {
            #expect(result.status == .ok, "\(result.system): \(result.reason ?? "")")
            #expect((result.pssPerInstanceMiB ?? 0) > 0 && result.hostMemoryPerInstanceMiB != nil, "\(result)")
        }
        #expect((results[0].cgroupPerInstanceMiB ?? 0) > 0 && results[1].cgroupPerInstanceMiB == nil)
        #expect(Self.leftovers().isEmpty, "\(Self.leftovers())")
        #expect(Self.bootProcesses().isEmpty, "idle VMs still running: \(Self.bootProcesses())")
    }

    /// PIDs of `hvbench boot` processes this process started.
    static func bootProcesses() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { pid in
            guard Int32(pid) != nil,
                let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
            return fields.count > 1 && Int32(fields[1]) == getpid() && command.contains("boot")
        }
    }

    @Test func withoutTheRuntimeTheContainerSystemsAreSkippedWithTheReason() {
        for kind in ContainerShape.Runtime.allCases {
            guard case .failure(let problem) = ContainerRuntime.find(kind, lookup: { _ in nil }) else {
                Issue.record("\(kind.rawValue) was found where nothing is installed")
                continue
            }
            #expect(problem.description.contains("\(kind.rawValue) is not installed"), "\(problem)")
            #expect(problem.description.contains("scripts/setup --with-containers"))
        }
    }

    @Test func cgroupLayoutsAreToldApart() throws {
        let root = temporaryDirectory().path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fileManager = FileManager.default
        try fileManager.createDirectory(atPath: "\(root)/unified", withIntermediateDirectories: true)
        #expect(CgroupLayout.detect(root: root) == nil)
        for controller in ["memory", "cpu"] {
            try fileManager.createDirectory(atPath: "\(root)/\(controller)", withIntermediateDirectories: true)
        }
        #expect(fileManager.createFile(atPath: "\(root)/unified/cgroup.controllers", contents: Data()))
        #expect(CgroupLayout.detect(root: root) == .legacy)
        #expect(CgroupLayout.legacy.missingControllers(root: root) == ["pids"])
        try Data("hugetlb\n".utf8).write(to: URL(fileURLWithPath: "\(root)/unified/cgroup.controllers"))
        #expect(CgroupLayout.detect(root: root) == .hybrid(controllers: "hugetlb"))
        try Data("cpuset cpu io memory\n".utf8).write(to: URL(fileURLWithPath: "\(root)/cgroup.controllers"))
        #expect(CgroupLayout.detect(root: root) == .unified)
        #expect(CgroupLayout.unified.missingControllers(root: root) == ["pids"])
        #expect(CgroupLayout.unified.limitFiles("/c", root: root).first { $0.label == "cpu" }?.file == "\(root)/c/cpu.max")
    }

    @Test func limitsThatWereNotAppliedFailTheBenchmark() {
        let asked = ContainerBundle.Settings(memoryLimitBytes: 1 << 28, cpuQuotaCPUs: 1)
        let shape = ContainerShape(runtime: .crun, cpuQuota: true)
        let v1 = ["memory": "268435456", "cpu": "100000", "period": "100000", "pids": "64", "procs": "42"]
        #expect(ContainerMeasurement.limitsProblem(v1, asked, shape) == nil)
        var v2 = v1
        v2["cpu"] = "100000 100000"
        #expect(ContainerMeasurement.limitsProblem(v2, asked, shape) == nil)
        var noQuota = v1
        noQuota["cpu"] = "-1"
        #expect(ContainerMeasurement.limitsProblem(noQuota, asked, shape)?.contains("CPU quota is -1, not 100000") == true)
        var memory = v1
        memory["memory"] = "9223372036854771712"
        #expect(ContainerMeasurement.limitsProblem(memory, asked, shape)?.contains("memory limit") == true)
        var empty = v1
        empty["procs"] = ""
        #expect(ContainerMeasurement.limitsProblem(empty, asked, shape)?.contains("no process") == true)
        #expect(ContainerMeasurement.limitsProblem(nil, asked, shape) != nil)
        let unlimited = ContainerBundle.Settings(memoryLimitBytes: 1 << 28, cpuQuotaCPUs: nil)
        var v2None = v1
        v2None["cpu"] = "max 100000"
        #expect(ContainerMeasurement.limitsProblem(v2None, unlimited, ContainerShape(runtime: .crun)) == nil)
    }
}
