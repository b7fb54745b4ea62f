import Foundation
import Results
import Synchronization

/// Nothing of a container outlives its measurement: the runtime deletes it, and its bundle and
/// cgroups go, when the measurement ends, when hvbench is interrupted (SIGINT, SIGTERM), and for
/// a process killed outright, when the next run starts a container (IDs carry the PID that made
/// them, so a run knows which leftovers are orphans).
enum ContainerCleanup {
    private struct Live {
        let runtime: ContainerRuntime
        let bundle: ContainerBundle
    }

    private static let live = Mutex<[String: Live]>([:])
    private static let counter = Mutex(0)
    private static let prepared = Mutex(false)
    /// Kept alive for the process's life; written once, by the first `prepare`.
    nonisolated(unsafe) private static var signalSources: [DispatchSourceSignal] = []

    /// A fresh container ID: the prefix, this process's PID, a counter.
    static func nextID() -> String {
        let number = counter.withLock { value -> Int in
            value += 1
            return value
        }
        return "\(ContainerRuntime.idPrefix)\(getpid())-\(number)"
    }

    /// Once per process, before its first container: removes what killed runs left and takes
    /// SIGINT and SIGTERM, so an interrupted run deletes its containers before it ends.
    static func prepare() {
        let first = prepared.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        guard first else { return }
        try? FileManager.default.createDirectory(atPath: ContainerRuntime.stateDirectory, withIntermediateDirectories: true)
        removeOrphans()
        var sources: [DispatchSourceSignal] = []
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                removeAll()
                signal(number, SIG_DFL)
                // To the process: dispatch's threads block signals, so raise() would leave it pending.
                kill(getpid(), number)
            }
            source.resume()
            sources.append(source)
        }
        signalSources = sources
    }

    static func register(_ bundle: ContainerBundle, _ runtime: ContainerRuntime) {
        live.withLock { $0[bundle.id] = Live(runtime: runtime, bundle: bundle) }
    }

    /// Deletes the container (if its runtime still holds it), its bundle and its cgroups.
    static func remove(_ bundle: ContainerBundle, _ runtime: ContainerRuntime) {
        live.withLock { _ = $0.removeValue(forKey: bundle.id) }
        if runtime.holds(bundle.id) { delete(bundle.id, runtime) }
        bundle.remove()
        removeCgroups(bundle.cgroupPath, runtime.cgroups)
        HiddenCgroup2Namespace.removeLeftover(of: bundle.id)
        // The state folders go once empty (rmdir leaves another run's in place).
        rmdir(runtime.stateRoot)
        rmdir(ContainerRuntime.stateDirectory)
    }

    /// Every container this process has running, then every bundle and root filesystem it made.
    /// The runtimes it started go first: one interrupted half-way through creating a container
    /// would otherwise go on creating it after its state was deleted.
    private static func removeAll() {
        stopping.withLock { $0 = true }
        // Not crun's mount namespace yet: deleting the containers runs crun in it.
        let holder = HiddenCgroup2Namespace.holderPID
        for child in childProcesses() where child != holder {
            kill(child, SIGKILL)
            _ = QuickCommand.waitForExit(child)
        }
        for (_, container) in live.withLock({ $0 }) { remove(container.bundle, container.runtime) }
        // The measurement's own thread may be removing the same folders: retry until gone.
        let directory = ContainerRuntime.stateDirectory
        let deadline = Date().addingTimeInterval(2)
        while Date() < deadline {
            let mine = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
                creator(of: $0) == getpid()
            }
            if mine.isEmpty { break }
            for name in mine { try? FileManager.default.removeItem(atPath: "\(directory)/\(name)") }
        }
        rmdir(directory)
        if let holder { kill(holder, SIGKILL) }
    }

    private static let stopping = Mutex(false)
    /// Set once an interrupted run is cleaning up: nothing new may be made.
    static var isStopping: Bool { stopping.withLock { $0 } }

    private static func delete(_ id: String, _ runtime: ContainerRuntime) {
        QuickCommand.run(runtime.command(["delete", "--force", id]))
    }

    /// A cgroup's directories the runtime left (a runtime killed mid-way): what still runs in
    /// them is killed (a container's process whose runtime never recorded it), then they go.
    private static func removeCgroups(_ path: String, _ layout: CgroupLayout) {
        guard path.hasPrefix("/\(ContainerRuntime.idPrefix)") else { return }
        for directory in layout.directories(path) where FileManager.default.fileExists(atPath: directory) {
            let deadline = Date().addingTimeInterval(2)
            while rmdir(directory) != 0 && errno == EBUSY && Date() < deadline {
                let procs = (try? String(contentsOfFile: "\(directory)/cgroup.procs", encoding: .utf8)) ?? ""
                for pid in procs.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
                usleep(1000)
            }
        }
    }

    /// This process's children (every thread's), from /proc.
    private static func childProcesses() -> [pid_t] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.flatMap { task in
            ((try? String(contentsOfFile: "/proc/self/task/\(task)/children", encoding: .utf8)) ?? "")
                .split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
    }

    /// The PID an ID or bundle name was made by, if it is one of hvbench's.
    static func creator(of name: String) -> Int32? {
        guard name.hasPrefix(ContainerRuntime.idPrefix) else { return nil }
        return name.dropFirst(ContainerRuntime.idPrefix.count).split(separator: "-").first.flatMap { Int32($0) }
    }

    /// Whether `pid` is a live hvbench process (not a PID the kernel gave to something else since).
    static func isLiveHVBench(_ pid: Int32) -> Bool {
        if pid == getpid() { return true }
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        let command = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? ""
        return command.hasPrefix("hvbench")
    }

    /// Deletes the containers, bundles, root filesystems and cgroups of hvbench processes that
    /// are gone. Returns the names removed.
    @discardableResult
    static func removeOrphans() -> [String] {
        let fileManager = FileManager.default
        var removed: [String] = []
        let orphan = { (name: String) -> Bool in creator(of: name).map { !isLiveHVBench($0) } ?? false }
        for kind in ContainerShape.Runtime.allCases {
            guard case .success(let runtime) = ContainerRuntime.find(kind) else { continue }
            for id in (try? fileManager.contentsOfDirectory(atPath: runtime.stateRoot)) ?? [] where orphan(id) {
                delete(id, runtime)
                removed.append(id)
            }
            for id in cgroupNames(runtime.cgroups) where orphan(id) {
                removeCgroups("/\(id)", runtime.cgroups)
                removed.append("cgroup \(id)")
            }
        }
        for name in (try? fileManager.contentsOfDirectory(atPath: ContainerRuntime.stateDirectory)) ?? [] where orphan(name) {
            try? fileManager.removeItem(atPath: "\(ContainerRuntime.stateDirectory)/\(name)")
            removed.append(name)
        }
        return removed
    }

    /// hvbench's cgroups at the top of the hierarchy.
    private static func cgroupNames(_ layout: CgroupLayout) -> Set<String> {
        let fileManager = FileManager.default
        let tops: [String]
        switch layout {
        case .unified: tops = [CgroupLayout.root]
        case .legacy, .hybrid:
            tops = ((try? fileManager.contentsOfDirectory(atPath: CgroupLayout.root)) ?? []).map { "\(CgroupLayout.root)/\($0)" }
        }
        var names = Set<String>()
        for top in tops {
            for name in (try? fileManager.contentsOfDirectory(atPath: top)) ?? [] where name.hasPrefix(ContainerRuntime.idPrefix)
            {
                names.insert(name)
            }
        }
        return names
    }
}
