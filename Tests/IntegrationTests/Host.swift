import Foundation
import KVM
import Machine

@testable import Bench
import Results

/// What this host offers the integration tests. Tests that need something missing are skipped
/// with the reason, never passed silently.
enum Host {
    static let kvmProblem: String? = KVMSystem.unavailabilityReason()
    static var hasKVM: Bool { kvmProblem == nil }
    static let kvmSkipMessage: Comment = "needs a usable /dev/kvm: \(kvmProblem ?? "")"
    static let qemu: String? = ProcessRunner.find("qemu-system-x86_64")
    /// util-linux's nsenter, which starts QEMU and the native runner inside a namespace.
    static let hasNsenter = ProcessRunner.find("nsenter") != nil
    static let qemuSkipMessage: Comment = "needs qemu-system-x86_64 (Debian package qemu-system-x86)"
    /// Why this process cannot have a network namespace of its own with TAP devices, or nil.
    static let namespaceProblem: String? = {
        guard FileManager.default.fileExists(atPath: "/dev/net/tun") else { return "/dev/net/tun does not exist" }
        do {
            try NetworkNamespace().close()
            return nil
        } catch {
            return "\(error)"
        }
    }()
    static var canMakeNamespaces: Bool { namespaceProblem == nil }
    static let namespaceSkipMessage: Comment = "needs /dev/net/tun and network namespaces: \(namespaceProblem ?? "")"
}

import Testing

/// The guest and native runner, built once per test process (cached on disk by source hash).
enum Built {
    static let artifacts = Task { try await ArtifactBuilder(workspace: try Workspace.locate()).build() }
    static func guestImage() async throws -> [UInt8] {
        [UInt8](try Data(contentsOf: try await artifacts.value.guestImage))
    }
}

/// A one-benchmark suite with counts small enough for tests. I/O benchmarks get fewer
/// iterations (an IDE write costs ~257 exits per sector on kvm_pvm, and an exit costs 17-40 µs
/// depending on the host), and the watchdog is far beyond what any host of this kind needs: it
/// is there to end a hung guest, never to time a working one, so no test depends on host speed.
func tinySuite(_ id: String, iterations: UInt64? = nil, repetitions: Int = 2, timeout: Double = 600) -> Suite {
    let size: UInt64? = id == "cpu.mem-bw" || id == "cpu.mem-lat" ? 1 << 20 : nil
    let defaultIterations: UInt64 =
        id == "cpu.mem-bw" || id.hasPrefix("disk.seq") ? 1 : id.hasPrefix("disk") ? 4 : id.hasPrefix("net") ? 64 : 20
    let entry = Suite.Entry(
        id: id, iterations: iterations ?? defaultIterations, repetitions: repetitions, warmups: 0, sizeBytes: size,
        timeoutSeconds: timeout)
    return Suite(name: "test", description: "", entries: [entry])
}

func temporaryDirectory() -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-it-\(UUID().uuidString)")
}
