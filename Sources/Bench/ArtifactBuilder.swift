import Foundation
import Results

/// Builds the benchmark guest (freestanding ELF) and the native runner from
/// `Workloads/guest` with the Swift toolchain's own clang and ld.lld, and caches both by a hash of
/// the sources, the flags and the compiler version. No prebuilt binary lives in git.
public struct ArtifactBuilder: Sendable {
    public let workspace: Workspace

    public struct Artifacts: Sendable {
        public let guestImage: URL
        public let nativeRunner: URL
        /// Hash of the guest ELF's bytes: identifies the guest in results.
        public let guestImageHash: String
        public let sourceHash: String
    }

    public struct BuildError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Shared by the guest and the native build so the workloads get the same code generation:
    /// integer registers only (the guest may not touch SSE state), no stack protector, and frame
    /// pointers omitted explicitly (the freestanding target keeps them by default, the Linux
    /// target does not, which made cpu.callret differ between the two builds of the same loop).
    static let workloadFlags = [
        "-O2", "-mgeneral-regs-only", "-fno-stack-protector", "-fomit-frame-pointer", "-fcf-protection=none", "-fno-builtin",
        "-Wall", "-Wextra",
    ]
    static let guestFlags =
        workloadFlags + [
            "--target=x86_64-unknown-none-elf", "-ffreestanding", "-nostdlib", "-mno-red-zone", "-fno-pic", "-fno-pie",
            "-mcmodel=small", "-fno-asynchronous-unwind-tables",
        ]

    public init(workspace: Workspace) { self.workspace = workspace }

    /// clang and ld.lld from the Swift toolchain: next to `swift` on $PATH, else any on $PATH.
    static func tool(_ name: String) throws -> String {
        if let swift = ProcessRunner.find("swift") {
            let directory = URL(fileURLWithPath: swift).resolvingSymlinksInPath().deletingLastPathComponent()
            let candidate = directory.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        if let found = ProcessRunner.find(name) { return found }
        throw BuildError(description: "\(name) not found: it ships with the Swift toolchain; put the toolchain's bin/ on PATH")
    }

    func sourceFiles() throws -> [URL] {
        let root = workspace.guestSources
        guard let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else {
            throw BuildError(description: "cannot read \(root.path)")
        }
        let files = enumerator.compactMap { $0 as? URL }.filter { ["c", "h", "S", "ld"].contains($0.pathExtension) }
        return files.sorted { $0.path < $1.path }
    }

    public func build() async throws -> Artifacts {
        let clang = try Self.tool("clang")
        let linker = try Self.tool("ld.lld")
        let version = try await ProcessRunner.run(clang, ["--version"], timeout: 30).standardOutput.first ?? ""
        var hash = FNV1a64()
        let root = workspace.guestSources.standardizedFileURL.path
        for file in try sourceFiles() {
            hash.add(String(file.standardizedFileURL.path.dropFirst(root.count)))
            hash.add(try Data(contentsOf: file))
        }
        hash.add(Self.guestFlags.joined(separator: " "))
        hash.add(version)
        let key = hash.hex
        let cache = workspace.artifactCache
        let guest = cache.appendingPathComponent("guest-\(key).elf")
        let native = cache.appendingPathComponent("native-\(key)")
        let fileManager = FileManager.default
        if !fileManager.fileExists(atPath: guest.path) || !fileManager.fileExists(atPath: native.path) {
            try fileManager.createDirectory(at: cache, withIntermediateDirectories: true)
            let scratch = cache.appendingPathComponent("build-\(key)-\(UUID().uuidString)")
            try? fileManager.removeItem(at: scratch)
            try fileManager.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? fileManager.removeItem(at: scratch) }
            try await buildGuest(clang: clang, linker: linker, scratch: scratch, output: guest)
            try await buildNative(clang: clang, scratch: scratch, output: native)
        }
        var imageHash = FNV1a64()
        imageHash.add(try Data(contentsOf: guest))
        return Artifacts(guestImage: guest, nativeRunner: native, guestImageHash: "fnv1a64:" + imageHash.hex, sourceHash: key)
    }

    private func compile(_ clang: String, _ arguments: [String]) async throws {
        let output = try await ProcessRunner.run(clang, arguments, timeout: 120)
        guard output.succeeded else {
            throw BuildError(
                description: "building the benchmark guest failed (\(output.statusDescription)):\n\(output.standardError)")
        }
    }

    private func buildGuest(clang: String, linker: String, scratch: URL, output: URL) async throws {
        let guest = workspace.guestSources
        let sources = [
            "common/bench.c", "common/job.c", "common/io_bench.c", "common/udp_frames.c", "common/memory_bench.c",
            "kernel/kernel.c", "kernel/user_main.c",
            "kernel/entry.S",
            "kernel/cpu_tables.c", "kernel/smp.c", "kernel/smp_entry.S", "kernel/smp_user.c", "kernel/litmus.c",
            "drivers/pci.c", "drivers/irq.c", "drivers/e1000.c", "drivers/ide.c", "drivers/virtio.c", "drivers/virtio_balloon.c",
        ]
        var objects: [String] = []
        for source in sources {
            let object = scratch.appendingPathComponent(source.replacingOccurrences(of: "/", with: "_") + ".o").path
            try await compile(
                clang,
                Self.guestFlags + [
                    "-I", guest.appendingPathComponent("common").path, "-I", guest.appendingPathComponent("kernel").path, "-I",
                    guest.appendingPathComponent("drivers").path, "-c",
                    guest.appendingPathComponent(source).path, "-o", object,
                ])
            objects.append(object)
        }
        let linked = scratch.appendingPathComponent("guest.elf")
        let link = try await ProcessRunner.run(
            linker,
            ["-T", guest.appendingPathComponent("kernel/guest.ld").path, "-nostdlib", "-static", "-o", linked.path] + objects,
            timeout: 120)
        guard link.succeeded else { throw BuildError(description: "linking the benchmark guest failed:\n\(link.standardError)") }
        try moveIntoPlace(linked, output)
    }

    private func buildNative(clang: String, scratch: URL, output: URL) async throws {
        let guest = workspace.guestSources
        let include = ["-I", guest.appendingPathComponent("common").path]
        var objects: [String] = []
        for source in ["common/bench.c", "common/io_bench.c", "common/udp_frames.c", "common/memory_bench.c"] {
            let object = scratch.appendingPathComponent("native_" + URL(fileURLWithPath: source).lastPathComponent + ".o").path
            try await compile(
                clang, Self.workloadFlags + include + ["-c", guest.appendingPathComponent(source).path, "-o", object])
            objects.append(object)
        }
        let linked = scratch.appendingPathComponent("native")
        try await compile(
            clang,
            ["-O2", "-Wall"] + include + [
                guest.appendingPathComponent("common/job.c").path, guest.appendingPathComponent("native/native_main.c").path,
                guest.appendingPathComponent("native/native_smp.c").path,
            ] + objects + [
                "-pthread", "-o", linked.path,
            ])
        try moveIntoPlace(linked, output)
    }

    private func moveIntoPlace(_ source: URL, _ destination: URL) throws {
        // rename(2) is atomic: concurrent builders never see a half-written artifact.
        guard rename(source.path, destination.path) == 0 else {
            throw BuildError(
                description: "cannot move \(source.path) to \(destination.path): \(String(cString: strerror(errno)))")
        }
    }
}
