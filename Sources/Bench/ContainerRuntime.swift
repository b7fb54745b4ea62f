import Foundation
import Results
import Synchronization

/// How this host's cgroups are mounted, which decides where a container's limits are read back
/// and whether crun can manage them as it is.
enum CgroupLayout: Equatable, Sendable {
    /// cgroup v1 controllers (and perhaps an empty v2 hierarchy beside them).
    case legacy
    /// v1 controllers with a v2 hierarchy that holds controllers too (`controllers`): crun 1.x
    /// refuses to create a container in this layout at all, whatever its cgroup manager.
    case hybrid(controllers: String)
    /// cgroup v2 only.
    case unified

    static let root = "/sys/fs/cgroup"

    /// The layout under `root`; nil where no cgroup hierarchy is mounted.
    static func detect(root: String = CgroupLayout.root) -> CgroupLayout? {
        let fileManager = FileManager.default
        if fileManager.fileExists(atPath: "\(root)/cgroup.controllers") { return .unified }
        guard fileManager.fileExists(atPath: "\(root)/memory") || fileManager.fileExists(atPath: "\(root)/cpu") else {
            return nil
        }
        let unified = (try? String(contentsOfFile: "\(root)/unified/cgroup.controllers", encoding: .utf8)) ?? ""
        let controllers = unified.trimmingCharacters(in: .whitespacesAndNewlines)
        return controllers.isEmpty ? .legacy : .hybrid(controllers: controllers)
    }

    /// The controllers a container's limits need that this host does not mount.
    func missingControllers(root: String = CgroupLayout.root) -> [String] {
        switch self {
        case .unified:
            let available = ((try? String(contentsOfFile: "\(root)/cgroup.controllers", encoding: .utf8)) ?? "")
                .split(whereSeparator: \.isWhitespace).map(String.init)
            return ["cpu", "memory", "pids"].filter { !available.contains($0) }
        case .legacy, .hybrid:
            return ["cpu", "memory", "pids"].filter { !FileManager.default.fileExists(atPath: "\(root)/\($0)") }
        }
    }

    /// The files that show a container's limits once its runtime applied them, for the cgroup at
    /// `path` (as in the bundle's `cgroupsPath`): label and file.
    func limitFiles(_ path: String, root: String = CgroupLayout.root) -> [(label: String, file: String)] {
        switch self {
        case .unified:
            return [
                ("memory", "\(root)\(path)/memory.max"), ("cpu", "\(root)\(path)/cpu.max"),
                ("pids", "\(root)\(path)/pids.max"), ("procs", "\(root)\(path)/cgroup.procs"),
            ]
        case .legacy, .hybrid:
            return [
                ("memory", "\(root)/memory\(path)/memory.limit_in_bytes"), ("cpu", "\(root)/cpu\(path)/cpu.cfs_quota_us"),
                ("period", "\(root)/cpu\(path)/cpu.cfs_period_us"), ("pids", "\(root)/pids\(path)/pids.max"),
                ("procs", "\(root)/memory\(path)/cgroup.procs"),
            ]
        }
    }

    /// The file holding the memory charged to the cgroup at `path`, bytes.
    func memoryUsageFile(_ path: String, root: String = CgroupLayout.root) -> String {
        switch self {
        case .unified: return "\(root)\(path)/memory.current"
        case .legacy, .hybrid: return "\(root)/memory\(path)/memory.usage_in_bytes"
        }
    }

    /// Every directory a container's cgroup at `path` may leave, for cleaning up after a runtime
    /// that could not.
    func directories(_ path: String, root: String = CgroupLayout.root) -> [String] {
        switch self {
        case .unified: return ["\(root)\(path)"]
        case .legacy, .hybrid:
            let controllers = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
            return controllers.sorted().map { "\(root)/\($0)\(path)" }
        }
    }
}

/// An OCI runtime on this host (crun or runc) and how hvbench drives it: with a state root of
/// hvbench's own, so its containers never mix with anyone else's, and (crun on a hybrid host
/// whose v2 hierarchy holds a controller) inside a private mount namespace that hides the v2
/// hierarchy (`HiddenCgroup2Namespace`), so crun manages the v1 controllers as on a plain
/// cgroup v1 host.
struct ContainerRuntime: Sendable {
    let kind: ContainerShape.Runtime
    let executable: String
    let cgroups: CgroupLayout
    /// What runs before the runtime: nothing, or the private mount namespace.
    let prefix: [String]

    /// Bundles, root filesystems and runtime state of hvbench's containers (tmpfs, root only).
    static let stateDirectory = "/run/hvbench-containers"
    /// Every container's ID starts with this, then the hvbench process's PID: a later run can
    /// tell which leftovers belong to a process that is gone.
    static let idPrefix = "hvbench-"

    var stateRoot: String { "\(Self.stateDirectory)/state-\(kind.rawValue)" }

    /// The runtime's command line for `words` (`run --bundle B id`, `delete --force id`).
    func command(_ words: [String]) -> [String] { prefix + [executable, "--root", stateRoot] + words }

    /// Whether the runtime still holds state for container `id`.
    func holds(_ id: String) -> Bool { FileManager.default.fileExists(atPath: "\(stateRoot)/\(id)") }

    /// The runtime, or why containers cannot run here (a skip, never a failure).
    /// - Parameter lookup: finds a program on PATH (tests pass one that finds nothing).
    static func find(
        _ kind: ContainerShape.Runtime, lookup: (String) -> String? = ProcessRunner.find
    ) -> Result<ContainerRuntime, BenchmarkRunner.StartProblem> {
        guard let executable = lookup(kind.rawValue) else {
            return .failure(
                .init(
                    description:
                        "\(kind.rawValue) is not installed (apt-get install \(kind.rawValue); scripts/setup --with-containers installs crun and runc)"
                ))
        }
        guard geteuid() == 0 else {
            return .failure(.init(description: "containers need root here: their cgroups and namespaces are the host's"))
        }
        for namespace in ["pid", "mnt", "ipc", "uts", "net"]
        where !FileManager.default.fileExists(atPath: "/proc/self/ns/\(namespace)") {
            return .failure(.init(description: "this kernel has no \(namespace) namespaces"))
        }
        guard let cgroups = CgroupLayout.detect() else {
            return .failure(.init(description: "no cgroup hierarchy is mounted at \(CgroupLayout.root)"))
        }
        let missing = cgroups.missingControllers()
        guard missing.isEmpty else {
            return .failure(
                .init(
                    description:
                        "the cgroup controller\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", ")) \(missing.count == 1 ? "is" : "are") not available, so a container's limits cannot be set"
                ))
        }
        var prefix: [String] = []
        if kind == .crun, case .hybrid = cgroups {
            switch HiddenCgroup2Namespace.enterCommand() {
            case .success(let enter): prefix = enter
            case .failure(let problem): return .failure(problem)
            }
        }
        return .success(ContainerRuntime(kind: kind, executable: executable, cgroups: cgroups, prefix: prefix))
    }
}

/// A private mount namespace in which a tmpfs hides the hybrid host's cgroup v2 hierarchy,
/// kept by a small holder process for the life of this one, so each crun command only enters
/// it (`nsenter`, one exec) instead of making it (unshare, sh and mount: about 5 ms a start).
/// The host's own mounts never change. The holder ends within a second of this process, and
/// its tmpfs (16 MiB at most, in use only as crun writes to it) with it.
enum HiddenCgroup2Namespace {
    private static let holder = Mutex<pid_t?>(nil)
    static let tmpfsName = "hvbench-hides-cgroup2"

    /// The holder's PID, if it runs.
    static var holderPID: pid_t? { holder.withLock { $0 } }

    /// Removes what crun left for container `id` on the tmpfs: seeing no v2 hierarchy, crun
    /// treats the tmpfs as a named v1 one and leaves a folder with a `cgroup.procs` file there
    /// per container, which would fill it.
    static func removeLeftover(of id: String) {
        guard let pid = holder.withLock({ $0 }) else { return }
        try? FileManager.default.removeItem(atPath: "/proc/\(pid)/root\(CgroupLayout.root)/unified/\(id)")
    }

    /// The command prefix that runs a program inside the namespace, starting its holder if needed.
    static func enterCommand() -> Result<[String], BenchmarkRunner.StartProblem> {
        guard let unshare = ProcessRunner.find("unshare"), let nsenter = ProcessRunner.find("nsenter"),
            let shell = ProcessRunner.find("sh")
        else {
            return .failure(
                .init(
                    description:
                        "crun refuses this host's hybrid cgroups, and hiding their v2 side needs unshare and nsenter (util-linux) and sh"
                ))
        }
        return holder.withLock { running -> Result<[String], BenchmarkRunner.StartProblem> in
            if let pid = running, waitpid(pid, nil, WNOHANG) == 0 {
                return .success([nsenter, "--mount=/proc/\(pid)/ns/mnt", "--"])
            }
            running = nil
            let script =
                "mount -t tmpfs -o size=16m,mode=755 \(tmpfsName) \(CgroupLayout.root)/unified || exit 1; "
                + "while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done"
            guard let pid = QuickCommand.start([unshare, "--mount", "--propagation", "private", "--", shell, "-c", script])
            else { return .failure(.init(description: "cannot start \(unshare) for crun's mount namespace")) }
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                let mounts = (try? String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8)) ?? ""
                if mounts.contains(tmpfsName) {
                    running = pid
                    return .success([nsenter, "--mount=/proc/\(pid)/ns/mnt", "--"])
                }
                if waitpid(pid, nil, WNOHANG) != 0 { break }
                usleep(1000)
            }
            kill(pid, SIGKILL)
            _ = QuickCommand.waitForExit(pid)
            return .failure(.init(description: "could not make a mount namespace that hides the cgroup v2 hierarchy for crun"))
        }
    }
}
