import Foundation
import KVM

@testable import Bench

/// What this host offers the integration tests. Tests that need something missing are skipped
/// with the reason, never passed silently.
enum Host {
    static let kvmProblem: String? = KVMSystem.unavailabilityReason()
    static var hasKVM: Bool { kvmProblem == nil }
    static let kvmSkipMessage: Comment = "needs a usable /dev/kvm: \(kvmProblem ?? "")"
    static let qemu: String? = ProcessRunner.find("qemu-system-x86_64")
    static let qemuSkipMessage: Comment = "needs qemu-system-x86_64 (Debian package qemu-system-x86)"
}

import Testing

/// The guest and native runner, built once per test process (cached on disk by source hash).
enum Built {
    static let artifacts = Task { try await ArtifactBuilder(workspace: try Workspace.locate()).build() }
    static func guestImage() async throws -> [UInt8] {
        [UInt8](try Data(contentsOf: try await artifacts.value.guestImage))
    }
}

/// A one-benchmark suite with counts small enough for tests.
func tinySuite(_ id: String, iterations: UInt64 = 20, repetitions: Int = 2, timeout: Double = 60) -> Suite {
    let size: UInt64? = id == "cpu.mem-bw" || id == "cpu.mem-lat" ? 1 << 20 : nil
    let entry = Suite.Entry(
        id: id, iterations: id == "cpu.mem-bw" ? 1 : iterations, repetitions: repetitions, warmups: 0, sizeBytes: size,
        timeoutSeconds: timeout)
    return Suite(name: "test", description: "", entries: [entry])
}

func temporaryDirectory() -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-it-\(UUID().uuidString)")
}
