import Foundation
import Results

/// A minimal root filesystem for containers: the native runner and the shared libraries it is
/// linked with (as `ldd` lists them), nothing else. Read-only to its containers, so the bundles
/// of one measurement (or 50 idle containers) share one copy, as image layers are shared.
struct ContainerRootfs {
    let path: String
    /// Where the runner is inside it.
    static let runner = "/hvbench-native"
    /// The disk image's mount point inside it.
    static let disk = "/hvbench-disk.img"

    static func make(runner: URL, named name: String) throws -> ContainerRootfs {
        guard !ContainerCleanup.isStopping else { throw ContainerError("the run was interrupted") }
        let fileManager = FileManager.default
        let path = "\(ContainerRuntime.stateDirectory)/\(name)-rootfs"
        try? fileManager.removeItem(atPath: path)
        do {
            try fileManager.createDirectory(atPath: path, withIntermediateDirectories: true)
            try fileManager.copyItem(atPath: runner.path, toPath: path + Self.runner)
            for library in try sharedLibraries(of: runner.path) {
                let destination = path + library
                try fileManager.createDirectory(
                    atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                // The file itself, not a symlink that would dangle inside (/lib64's loader is one).
                let file = URL(fileURLWithPath: library).resolvingSymlinksInPath().path
                if !fileManager.fileExists(atPath: destination) { try fileManager.copyItem(atPath: file, toPath: destination) }
            }
            // Mount points exist before the root is made read-only.
            for directory in ["proc", "dev", "tmp"] {
                try fileManager.createDirectory(atPath: "\(path)/\(directory)", withIntermediateDirectories: true)
            }
            guard fileManager.createFile(atPath: path + disk, contents: nil) else {
                throw ContainerError("cannot create the disk's mount point in \(path)")
            }
        } catch {
            try? fileManager.removeItem(atPath: path)
            throw error
        }
        return ContainerRootfs(path: path)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// The absolute paths of the libraries `binary` loads, its dynamic loader included.
    static func sharedLibraries(of binary: String) throws -> [String] {
        let ldd = ProcessRunner.find("ldd") ?? "/usr/bin/ldd"
        let (status, output) = QuickCommand.run([ldd, binary], captureOutput: true)
        guard status != nil else { throw ContainerError("cannot run \(ldd) on \(binary)") }
        // A static binary: "not a dynamic executable" (status 1) and nothing to copy.
        return output.split(separator: "\n").compactMap { line in
            line.split(whereSeparator: \.isWhitespace).map(String.init).first { $0.hasPrefix("/") }
        }
    }
}

struct ContainerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One container's OCI bundle: `config.json` (OCI runtime spec 1.0) in a directory of its own
/// under the state directory, naming a shared `ContainerRootfs`.
struct ContainerBundle {
    /// What the container gets, beyond the runner's arguments.
    struct Settings {
        var memoryLimitBytes: Int64
        /// CFS quota in CPUs (quota = CPUs × period); nil: none.
        var cpuQuotaCPUs: Int?
        /// Host CPUs and memory nodes (`--pin`, `--numa-node`); nil: any.
        var cpus: String?
        var memoryNodes: String?
        /// The network namespace to join (a path); nil: a new, empty one.
        var networkNamespace: String?
        /// A host file bind-mounted at `ContainerRootfs.disk`, and whether read-only.
        var disk: (path: String, readOnly: Bool)?
        /// Record the applied limits from a createRuntime hook (adds a shell's start to the
        /// container's; container.start leaves it out).
        var recordLimits = true
        /// What the container runs (inside the root filesystem).
        var program = ContainerRootfs.runner
    }

    static let cpuPeriodMicroseconds: Int64 = 100_000
    static let pidsLimit: Int64 = 64

    let id: String
    let directory: String
    let cgroupPath: String
    /// Where the createRuntime hook writes the limits it read back.
    var limitsRecord: String { "\(directory)/limits-seen" }

    /// Writes the bundle for `arguments` run in `rootfs`.
    static func make(
        id: String, rootfs: ContainerRootfs, arguments: [String], settings: Settings, cgroups: CgroupLayout
    ) throws -> ContainerBundle {
        guard !ContainerCleanup.isStopping else { throw ContainerError("the run was interrupted") }
        let directory = "\(ContainerRuntime.stateDirectory)/\(id)"
        let bundle = ContainerBundle(id: id, directory: directory, cgroupPath: "/\(id)")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configuration = bundle.configuration(rootfs, arguments, settings, cgroups)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            try encoder.encode(configuration).write(to: URL(fileURLWithPath: "\(directory)/config.json"))
        } catch {
            bundle.remove()
            throw ContainerError("cannot write \(directory)/config.json: \(error)")
        }
        return bundle
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    private func configuration(
        _ rootfs: ContainerRootfs, _ arguments: [String], _ settings: Settings, _ cgroups: CgroupLayout
    ) -> OCIConfiguration {
        var mounts = [
            OCIConfiguration.Mount(destination: "/proc", type: "proc", source: "proc", options: nil),
            .init(destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "mode=755", "size=64k"]),
            .init(destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "size=1m"]),
        ]
        if let disk = settings.disk {
            mounts.append(
                .init(
                    destination: ContainerRootfs.disk, type: "bind", source: disk.path,
                    options: ["bind", disk.readOnly ? "ro" : "rw"]))
        }
        var namespaces = ["pid", "ipc", "uts", "mount"].map { OCIConfiguration.Namespace(type: $0, path: nil) }
        namespaces.append(.init(type: "network", path: settings.networkNamespace))
        var hooks: OCIConfiguration.Hooks?
        if settings.recordLimits {
            // createRuntime hooks run once the runtime has made the container's namespaces and
            // cgroups, before its process runs: what they read is what the runtime applied.
            let reads = cgroups.limitFiles(cgroupPath).map { "echo \($0.label) $(cat \($0.file))" }
            hooks = .init(
                createRuntime: [
                    .init(
                        path: ProcessRunner.find("sh") ?? "/bin/sh",
                        args: ["sh", "-c", "{ \(reads.joined(separator: "; ")); } > \(limitsRecord)"])
                ])
        }
        let cpu = OCIConfiguration.CPU(
            quota: settings.cpuQuotaCPUs.map { Int64($0) * Self.cpuPeriodMicroseconds },
            period: settings.cpuQuotaCPUs == nil ? nil : UInt64(Self.cpuPeriodMicroseconds), cpus: settings.cpus,
            mems: settings.memoryNodes)
        return OCIConfiguration(
            ociVersion: "1.0.2",
            process: .init(
                terminal: false, user: .init(uid: 0, gid: 0), args: [settings.program] + arguments, env: ["PATH=/"],
                cwd: "/", noNewPrivileges: true, capabilities: .init(bounding: [], effective: [], permitted: [])),
            root: .init(path: rootfs.path, readonly: true), hostname: "hvbench", mounts: mounts, hooks: hooks,
            linux: .init(
                cgroupsPath: cgroupPath,
                resources: .init(
                    memory: .init(limit: settings.memoryLimitBytes), cpu: cpu, pids: .init(limit: Self.pidsLimit)),
                namespaces: namespaces,
                maskedPaths: ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"],
                readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]))
    }

    /// The limits the hook read back, by label ("memory", "cpu", "period", "pids", "procs").
    func limitsSeen() -> [String: String]? {
        guard let text = try? String(contentsOfFile: limitsRecord, encoding: .utf8) else { return nil }
        var seen: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            seen[parts[0]] = parts.count > 1 ? parts[1] : ""
        }
        return seen
    }
}

/// The part of the OCI runtime spec's config.json hvbench writes.
struct OCIConfiguration: Encodable {
    struct User: Encodable {
        let uid: UInt32
        let gid: UInt32
    }
    struct Capabilities: Encodable {
        let bounding: [String]
        let effective: [String]
        let permitted: [String]
    }
    struct Process: Encodable {
        let terminal: Bool
        let user: User
        let args: [String]
        let env: [String]
        let cwd: String
        let noNewPrivileges: Bool
        let capabilities: Capabilities
    }
    struct Root: Encodable {
        let path: String
        let readonly: Bool
    }
    struct Mount: Encodable {
        let destination: String
        let type: String
        let source: String
        let options: [String]?
    }
    struct Hook: Encodable {
        let path: String
        let args: [String]
    }
    struct Hooks: Encodable {
        let createRuntime: [Hook]
    }
    struct Memory: Encodable { let limit: Int64 }
    struct CPU: Encodable {
        let quota: Int64?
        let period: UInt64?
        let cpus: String?
        let mems: String?
    }
    struct Pids: Encodable { let limit: Int64 }
    struct Resources: Encodable {
        let memory: Memory
        let cpu: CPU
        let pids: Pids
    }
    struct Namespace: Encodable {
        let type: String
        let path: String?
    }
    struct Linux: Encodable {
        let cgroupsPath: String
        let resources: Resources
        let namespaces: [Namespace]
        let maskedPaths: [String]
        let readonlyPaths: [String]
    }

    let ociVersion: String
    let process: Process
    let root: Root
    let hostname: String
    let mounts: [Mount]
    let hooks: Hooks?
    let linux: Linux
}
