import Foundation
import Results

/// The Linux workloads' own files in one folder of the guest image's cache entry: `hvb-ops`
/// (Workloads/linux/hvb-ops.c, linked statically against glibc and Debian's zlib by the Swift
/// toolchain's clang), `hvb-job` (the script that runs one job) and Debian's busybox with its
/// applets. The initramfs carries copies of them; the native runs use these very files, so guest
/// and host run the same binaries.
public struct LinuxWorkloadTools: Sendable {
    public let folder: URL

    var operations: URL { folder.appendingPathComponent("hvb-ops") }
    var job: URL { folder.appendingPathComponent("hvb-job") }
    var busybox: URL { folder.appendingPathComponent("busybox") }
    /// Busybox's applets as symlinks: first on a native job's PATH, so it runs with the guest's
    /// awk, grep and tr rather than the host's.
    var applets: URL { folder.appendingPathComponent("bin") }

    var isComplete: Bool {
        [operations, job, busybox, applets.appendingPathComponent("hvb-ops")].allSatisfy {
            FileManager.default.fileExists(atPath: $0.path)
        }
    }

    /// The sources the tools are made from, read once: they are part of the image's hash.
    struct Sources {
        let operationsSource: URL
        let operations: [UInt8]
        let job: [UInt8]

        init(workspace: Workspace) throws {
            let folder = workspace.workloads.appendingPathComponent("linux")
            operationsSource = folder.appendingPathComponent("hvb-ops.c")
            let jobPath = folder.appendingPathComponent("hvb-job")
            guard let operations = FileManager.default.contents(atPath: operationsSource.path),
                let job = FileManager.default.contents(atPath: jobPath.path)
            else {
                throw ArtifactBuilder.BuildError(description: "cannot read \(operationsSource.path) or \(jobPath.path)")
            }
            self.operations = [UInt8](operations)
            self.job = [UInt8](job)
        }

        func addIdentity(to hash: inout FNV1a64) {
            hash.add(operations)
            hash.add(job)
        }
    }

    /// Builds the folder (in a staging folder moved into place, so a half-built one is never
    /// taken for complete).
    func build(from sources: Sources, busybox busyboxBytes: Data) async throws {
        let manager = FileManager.default
        if isComplete { return }
        let staging = folder.deletingLastPathComponent().appendingPathComponent("tools-staging-\(getpid())")
        try? manager.removeItem(at: staging)
        try manager.createDirectory(at: staging, withIntermediateDirectories: true)
        defer { try? manager.removeItem(at: staging) }
        let staged = LinuxWorkloadTools(folder: staging)
        try busyboxBytes.write(to: staged.busybox)
        try Data(sources.job).write(to: staged.job)
        for file in [staged.busybox, staged.job] {
            try manager.setAttributes([.posixPermissions: 0o755], ofItemAtPath: file.path)
        }
        let clang = try ArtifactBuilder.tool("clang")
        let compiled = try await ProcessRunner.run(
            clang,
            ["-static", "-O2", "-Wall", "-o", staged.operations.path, sources.operationsSource.path, "-lz"], timeout: 300)
        guard compiled.succeeded else {
            throw LinuxGuestBuilder.Unavailable(
                description:
                    "building hvb-ops (static, with zlib) failed: \(compiled.standardError.suffix(400)) (scripts/setup --with-linux installs zlib1g-dev)"
            )
        }
        try manager.createDirectory(at: staged.applets, withIntermediateDirectories: true)
        // The applets point at the final folder's busybox, where they will live.
        let appletNames = try await ProcessRunner.run(staged.busybox.path, ["--list"], timeout: 60)
        guard appletNames.succeeded else {
            throw ArtifactBuilder.BuildError(description: "busybox --list: \(appletNames.statusDescription)")
        }
        for name in appletNames.standardOutput where !name.isEmpty && !name.contains("/") {
            try manager.createSymbolicLink(
                atPath: staged.applets.appendingPathComponent(name).path, withDestinationPath: busybox.path)
        }
        try manager.createSymbolicLink(
            atPath: staged.applets.appendingPathComponent("hvb-ops").path, withDestinationPath: operations.path)
        try? manager.removeItem(at: folder)
        try manager.moveItem(at: staging, to: folder)
    }
}
