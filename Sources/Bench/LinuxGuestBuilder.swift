import Foundation
import Results

/// The Linux guest: Debian's own kernel (`linux-image-amd64`, a bzImage) and an
/// initramfs of Debian's `busybox-static` with hvbench's `/init` (`Workloads/linux/init`). The
/// packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x`, never installed
/// on the host; the result is cached by the packages' file names (name, version, architecture)
/// and the `/init` script. Users may boot their own kernel and initramfs with `hvbench boot`.
public struct LinuxGuestBuilder: Sendable {
    public let workspace: Workspace

    public struct Image: Sendable {
        public let kernel: URL
        public let initramfs: URL
        /// The kernel package, e.g. linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb.
        public let kernelPackage: String
        public let hash: String
        /// The workload programs the initramfs carries (`withWorkloads`), e.g. ["fio", "iperf3"].
        public var programs: [String] = []
        /// With the workloads: a folder of the very files the guest runs them with, for the
        /// native runs (`LinuxWorkloadTools`).
        public var tools: LinuxWorkloadTools? = nil
        /// The drivers /init loads (`modules` and those of `optionalModules` the kernel has).
        public var drivers: [String] = []
        var driverList: URL { initramfs.deletingLastPathComponent().appendingPathComponent("drivers") }
    }

    /// Why the Linux guest cannot be built here (no apt, or the packages cannot be had).
    public struct Unavailable: Error, CustomStringConvertible {
        public let description: String
    }

    /// Debian's kernel flavour: the generic kernel by default, which has a driver for every
    /// device hvbench's systems and QEMU give the guest; `HVBENCH_LINUX_KERNEL` names another
    /// meta-package (`linux-image-cloud-amd64` boots faster but has no e1000 driver).
    static var metaPackage: String {
        ProcessInfo.processInfo.environment["HVBENCH_LINUX_KERNEL"].flatMap { $0.isEmpty ? nil : $0 }
            ?? "linux-image-amd64"
    }
    static let busyboxPackage = "busybox-static"
    /// The drivers of the devices hvbench's VMs and QEMU give the guest, loaded by /init in this
    /// order (with what each depends on, from depmod's modules.dep).
    static let modules = ["virtio_pci", "virtio_net", "virtio_blk", "ata_piix", "sd_mod"]
    /// Drivers loaded where the kernel has them: Debian's cloud kernel has no e1000.
    static let optionalModules = ["e1000", "virtio_balloon"]

    /// Whether the initramfs carries the workload programs (LinuxGuestPrograms): Debian's fio
    /// alone needs 64 shared libraries, about 85 MB, which the guest unpacks into RAM, so the
    /// plain guest (`linux.boot`, `hvbench boot linux`) leaves them out.
    public let withWorkloads: Bool

    public init(workspace: Workspace, withWorkloads: Bool = false) {
        self.workspace = workspace
        self.withWorkloads = withWorkloads
    }

    public func build() async throws -> Image {
        // Every tool before anything is fetched: a missing one is a clear skip, not a half-built guest.
        for tool in ["sh", "apt-get", "apt-cache", "dpkg-deb", "depmod"] { _ = try Self.tool(tool) }
        let cache = workspace.artifactCache.appendingPathComponent("linux")
        let downloads = cache.appendingPathComponent("debs")
        try FileManager.default.createDirectory(at: downloads, withIntermediateDirectories: true)
        let kernelPackage = try await resolveKernelPackage()
        let packages = [
            try await download(kernelPackage, into: downloads), try await download(Self.busyboxPackage, into: downloads),
        ]
        let initScript = workspace.workloads.appendingPathComponent("linux/init")
        guard let initBytes = FileManager.default.contents(atPath: initScript.path) else {
            throw ArtifactBuilder.BuildError(description: "cannot read \(initScript.path)")
        }
        var hash = FNV1a64()
        for package in packages { hash.add(package.lastPathComponent.utf8) }
        hash.add(initBytes)
        hash.add(MilestoneProgram.elf)
        hash.add((Self.modules + Self.optionalModules).joined(separator: " ").utf8)
        let programs = withWorkloads ? await LinuxGuestPrograms.resolve() : LinuxGuestPrograms(programs: [])
        programs.addIdentity(to: &hash)
        let sources = withWorkloads ? try LinuxWorkloadTools.Sources(workspace: workspace) : nil
        sources?.addIdentity(to: &hash)
        let key = hash.hex
        let directory = cache.appendingPathComponent(key)
        var image = Image(
            kernel: directory.appendingPathComponent("vmlinuz"), initramfs: directory.appendingPathComponent("initramfs.cpio"),
            kernelPackage: packages[0].lastPathComponent, hash: key, programs: programs.programs.map(\.name))
        if sources != nil { image.tools = LinuxWorkloadTools(folder: directory.appendingPathComponent("tools")) }
        if FileManager.default.fileExists(atPath: image.initramfs.path)
            && FileManager.default.fileExists(atPath: image.kernel.path) && image.tools?.isComplete != false,
            let drivers = try? String(contentsOf: image.driverList, encoding: .utf8)
        {
            image.drivers = drivers.split(separator: "\n").map(String.init)
            return image
        }
        let staging = cache.appendingPathComponent("staging-\(getpid())")
        defer { try? FileManager.default.removeItem(at: staging) }
        for package in packages {
            try await run("dpkg-deb", ["-x", package.path, staging.path], "unpacking \(package.lastPathComponent)")
        }
        let boot = staging.appendingPathComponent("boot")
        guard
            let kernelName = try FileManager.default.contentsOfDirectory(atPath: boot.path).first(where: {
                $0.hasPrefix("vmlinuz-")
            })
        else { throw Unavailable(description: "\(packages[0].lastPathComponent) holds no /boot/vmlinuz-*") }
        guard let busybox = FileManager.default.contents(atPath: staging.appendingPathComponent("bin/busybox").path) else {
            throw Unavailable(description: "\(packages[1].lastPathComponent) holds no /bin/busybox")
        }
        var archive = CPIOArchive()
        var folders: Set<String> = []
        for folder in ["bin", "dev", "proc", "sys", "sbin", "usr", "usr/bin", "usr/sbin", "tmp", "etc"] {
            archive.add(folder, .directory)
            folders.insert(folder)
        }
        let version = String(kernelName.dropFirst("vmlinuz-".count))
        image.drivers = try await addModules(version: version, from: staging, to: &archive, folders: &folders)
        try programs.add(to: &archive, folders: &folders)
        archive.add("bin/busybox", .file(executable: true), data: [UInt8](busybox))
        archive.add("bin/sh", .symlink(target: "busybox"))
        archive.add("init", .file(executable: true), data: [UInt8](initBytes))
        archive.add("bin/hvb-milestone", .file(executable: true), data: MilestoneProgram.elf)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if let sources, let tools = image.tools {
            try await tools.build(from: sources, busybox: busybox)
            archive.add("bin/hvb-ops", .file(executable: true), data: [UInt8](try Data(contentsOf: tools.operations)))
            archive.add("bin/hvb-job", .file(executable: true), data: [UInt8](sources.job))
            for code in [MilestoneProgram.workloadStarts, MilestoneProgram.workloadEnds] {
                archive.add("bin/hvb-milestone-\(code)", .file(executable: true), data: MilestoneProgram.elf(writing: code))
            }
        }
        try writeAtomically(Data(archive.finish()), to: image.initramfs)
        try writeAtomically(Data(image.drivers.joined(separator: "\n").utf8), to: image.driverList)
        let kernelBytes = try Data(contentsOf: boot.appendingPathComponent(kernelName))
        try writeAtomically(kernelBytes, to: image.kernel)
        return image
    }

    /// The driver modules and everything they depend on, at their paths under
    /// /lib/modules/<version>, with the lines of depmod's modules.dep that name them, and the
    /// list /init loads (etc/hvbench-modules).
    private func addModules(
        version: String, from staging: URL, to archive: inout CPIOArchive, folders: inout Set<String>
    ) async throws -> [String] {
        try await run("depmod", ["-b", staging.path, version], "depmod of \(version)")
        let moduleRoot = staging.appendingPathComponent("lib/modules/\(version)")
        let dependencyText = try String(contentsOf: moduleRoot.appendingPathComponent("modules.dep"), encoding: .utf8)
        var dependencies: [String: [String]] = [:]
        for line in dependencyText.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard let module = parts.first else { continue }
            dependencies[String(module)] = parts.count > 1 ? parts[1].split(separator: " ").map(String.init) : []
        }
        func path(of name: String) -> String? {
            dependencies.keys.first { key in
                let file = key.split(separator: "/").last.map(String.init) ?? key
                return file == "\(name).ko" || file.hasPrefix("\(name).ko.")
            }
        }
        var needed: [String] = []
        var loaded: [String] = []
        for name in Self.modules + Self.optionalModules {
            guard let module = path(of: name) else {
                if Self.optionalModules.contains(name) { continue }
                throw Unavailable(description: "Debian's kernel \(version) has no module \(name)")
            }
            loaded.append(name)
            for file in (dependencies[module] ?? []) + [module] where !needed.contains(file) { needed.append(file) }
        }
        // Every folder on the way to a module, each once, parents first.
        for file in needed {
            let path = "lib/modules/\(version)/\(file)".split(separator: "/").dropLast()
            for depth in 1...path.count {
                let folder = path.prefix(depth).joined(separator: "/")
                if folders.insert(folder).inserted { archive.add(folder, .directory) }
            }
            let bytes = try Data(contentsOf: moduleRoot.appendingPathComponent(file))
            archive.add("lib/modules/\(version)/\(file)", .file(executable: false), data: [UInt8](bytes))
        }
        let lines = needed.map { "\($0): \((dependencies[$0] ?? []).joined(separator: " "))" }
        archive.add(
            "lib/modules/\(version)/modules.dep", .file(executable: false),
            data: Array((lines.joined(separator: "\n") + "\n").utf8))
        archive.add(
            "etc/hvbench-modules", .file(executable: false), data: Array((loaded.joined(separator: "\n") + "\n").utf8))
        return loaded
    }

    /// The versioned kernel package the meta-package depends on.
    private func resolveKernelPackage() async throws -> String {
        let output = try await ProcessRunner.run(try Self.tool("apt-cache"), ["depends", Self.metaPackage], timeout: 120)
        let name = output.standardOutput.compactMap { line -> String? in
            let words = line.split(separator: " ").map(String.init)
            guard words.count == 2, words[0] == "Depends:", words[1].hasPrefix("linux-image-") else { return nil }
            return words[1]
        }.first
        guard let name else {
            throw Unavailable(
                description:
                    "apt-cache knows no \(Self.metaPackage) (run apt-get update, or the host cannot reach Debian's archive)")
        }
        return name
    }

    /// `apt-get download` of `package` into `folder` (once: an existing .deb of it is reused).
    private func download(_ package: String, into folder: URL) async throws -> URL {
        func existing() -> URL? {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            return files.filter { $0.hasPrefix(package + "_") && $0.hasSuffix(".deb") }.sorted().last.map {
                folder.appendingPathComponent($0)
            }
        }
        if let found = existing() { return found }
        let output = try await ProcessRunner.run(
            try Self.tool("sh"), ["-c", "cd \"$1\" && apt-get download \"$2\"", "sh", folder.path, package], timeout: 600)
        guard output.succeeded, let found = existing() else {
            throw Unavailable(
                description:
                    "apt-get download \(package) failed: \(output.standardError.suffix(300)) (\(output.statusDescription))")
        }
        return found
    }

    /// A host tool's path, or why the Linux guest cannot be built without it.
    static func tool(_ name: String) throws -> String {
        guard let path = ProcessRunner.find(name) else {
            throw Unavailable(description: "\(name) is not installed: the Linux guest is built from Debian packages")
        }
        return path
    }

    private func run(_ tool: String, _ arguments: [String], _ what: String) async throws {
        let output = try await ProcessRunner.run(try Self.tool(tool), arguments, timeout: 600)
        guard output.succeeded else {
            throw ArtifactBuilder.BuildError(
                description: "\(what): \(output.statusDescription) \(output.standardError.suffix(300))")
        }
    }
}
