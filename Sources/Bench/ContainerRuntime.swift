import Foundation
import Results

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
/// hierarchy, so crun manages the v1 controllers as on a plain cgroup v1 host.
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
    static func find(_ kind: ContainerShape.Runtime) -> Result<ContainerRuntime, BenchmarkRunner.StartProblem> {
        guard let executable = ProcessRunner.find(kind.rawValue) else {
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
            guard let unshare = ProcessRunner.find("unshare"), let shell = ProcessRunner.find("sh") else {
                return .failure(
                    .init(
                        description:
                            "crun refuses this host's hybrid cgroups, and hiding their v2 side needs unshare (util-linux) and sh")
                )
            }
            prefix = [
                unshare, "--mount", "--propagation", "private", "--", shell, "-c",
                "mount -t tmpfs -o size=4k,mode=555 hvbench-hides-cgroup2 \(CgroupLayout.root)/unified && exec \"$0\" \"$@\"",
            ]
        }
        return .success(ContainerRuntime(kind: kind, executable: executable, cgroups: cgroups, prefix: prefix))
    }
}
