import Foundation
import KVM
import Results

/// `hvbench density`: host memory per idle instance, the density question the OS-level
/// virtualization vendors argued about. For each system and count, N idle instances are started
/// and left to settle, then measured: the instances' proportional set size (PSS: shared pages
/// split among their users, so 50 copies of a library count once), and the growth of the
/// host's pinned memory (which sees kernel memory too: page tables, KVM's structures, cgroups). An idle
/// container is the native runner blocked in pause(); an idle VM is one of hvbench's VMs in a
/// process of its own (`hvbench boot`, as every VMM runs a VM) whose guest waits in hlt for
/// requests on its NIC, as a server VM with nothing to do.
///
/// The host figure is the growth of the memory the kernel cannot take back (anonymous pages,
/// shmem, page tables, kernel stacks, unreclaimable slab, from /proc/meminfo), not of
/// MemAvailable, whose page-cache estimate moved by more than ten instances' worth between
/// two reads minutes apart on these hosts.
public enum Density {
    public struct Plan: Sendable {
        public var systems: [SystemDefinition]
        public var counts: [Int]
        public var memoryMiB = 256
        public var settleSeconds = 2.0
        /// The hvbench executable that boots each idle VM (`hvbench boot`).
        public var vmExecutable: String

        public init(systems: [SystemDefinition], counts: [Int], vmExecutable: String) {
            self.systems = systems
            self.counts = counts
            self.vmExecutable = vmExecutable
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        public var system: String
        public var count: Int
        public var status: ResultStatus
        public var reason: String?
        /// Mean PSS of one instance's processes, MiB.
        public var pssPerInstanceMiB: Double?
        /// The growth of the host's pinned memory with the instances running, per instance, MiB.
        public var hostMemoryPerInstanceMiB: Double?
        /// Containers: their memory cgroups' usage (charged pages), per instance, MiB.
        public var cgroupPerInstanceMiB: Double?
    }

    /// Which systems can be idle instances: containers, and hvbench's own VMs.
    public static func supports(_ system: SystemDefinition) -> Bool {
        switch system.runner {
        case .container, .vm: return true
        case .native, .qemu: return false
        }
    }

    /// Measures every (count, system) pair in turn.
    public static func measure(
        _ plan: Plan, artifacts: ArtifactBuilder.Artifacts, progress: @Sendable (String) -> Void
    ) async -> [Result] {
        var results: [Result] = []
        for count in plan.counts {
            for system in plan.systems {
                progress("\(system.name): \(count) idle instance\(count == 1 ? "" : "s") ...")
                let result = await measure(system, count: count, plan, artifacts)
                progress("    \(describe(result))")
                results.append(result)
            }
        }
        return results
    }

    static func describe(_ result: Result) -> String {
        guard result.status == .ok else { return "\(result.status.rawValue): \(result.reason ?? "")" }
        let pss = result.pssPerInstanceMiB.map { String(format: "%.1f MiB PSS", $0) } ?? "-"
        let host = result.hostMemoryPerInstanceMiB.map { String(format: "%.1f MiB of host memory", $0) } ?? "-"
        return "\(pss), \(host) per instance"
    }

    private static func measure(_ system: SystemDefinition, count: Int, _ plan: Plan, _ artifacts: ArtifactBuilder.Artifacts)
        async -> Result
    {
        var result = Result(system: system.name, count: count, status: .failed)
        let group: IdleGroup
        switch system.runner {
        case .container(let shape):
            switch ContainerRuntime.find(shape.runtime) {
            case .success(let runtime): group = IdleContainers(runtime: runtime, memoryMiB: plan.memoryMiB)
            case .failure(let problem):
                result.status = .skipped
                result.reason = problem.description
                return result
            }
        case .vm(.kvmParavirtual, _):
            result.status = .skipped
            result.reason = "hvbench boot has no paravirtual CPU option yet"
            return result
        case .vm(let cpu, let devices):
            if cpu == .kvm, let problem = KVMSystem.unavailabilityReason() {
                result.status = .skipped
                result.reason = problem
                return result
            }
            group = IdleVMs(
                executable: plan.vmExecutable, guest: artifacts.guestImage.path, cpu: cpu, devices: devices,
                memoryMiB: plan.memoryMiB)
        case .native, .qemu:
            result.status = .skipped
            result.reason = "density compares containers with hvbench's own VMs"
            return result
        }
        defer { group.stopAll() }
        let before = HostMemory.pinnedBytes()
        do {
            try group.start(count, runner: artifacts.nativeRunner)
        } catch {
            result.reason = "\(error)"
            return result
        }
        try? await Task.sleep(nanoseconds: UInt64(plan.settleSeconds * 1e9))
        let after = HostMemory.pinnedBytes()
        let pids = group.processIDs()
        guard pids.count == count, group.allAlive() else {
            result.reason = "only \(pids.count) of \(count) instances were still running after settling"
            return result
        }
        let pss = pids.compactMap(HostMemory.proportionalSetBytes)
        guard pss.count == count else {
            result.reason = "could not read the PSS of every instance"
            return result
        }
        let mebibyte = 1_048_576.0
        result.status = .ok
        result.pssPerInstanceMiB = Double(pss.reduce(0, +)) / Double(count) / mebibyte
        if let before, let after { result.hostMemoryPerInstanceMiB = (Double(after) - Double(before)) / Double(count) / mebibyte }
        if let charged = group.chargedBytes() { result.cgroupPerInstanceMiB = Double(charged) / Double(count) / mebibyte }
        return result
    }
}

/// Reads the host's memory figures from /proc.
enum HostMemory {
    /// Memory the kernel cannot reclaim: anonymous pages, shmem (memfds such as the translator's
    /// code cache), page tables, kernel stacks and unreclaimable slab, bytes.
    static func pinnedBytes() -> UInt64? {
        var total: UInt64 = 0
        for name in ["AnonPages:", "Shmem:", "PageTables:", "KernelStack:", "SUnreclaim:"] {
            guard let bytes = field(name, in: "/proc/meminfo") else { return nil }
            total += bytes
        }
        return total
    }

    /// The PSS of process `pid` (smaps_rollup), bytes.
    static func proportionalSetBytes(_ pid: pid_t) -> UInt64? { field("Pss:", in: "/proc/\(pid)/smaps_rollup") }

    /// A "Name:  N kB" line's value in bytes.
    static func field(_ name: String, in file: String) -> UInt64? {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let words = line.split(whereSeparator: \.isWhitespace)
            guard words.count >= 2, let kilobytes = UInt64(words[1]) else { return nil }
            return kilobytes * 1024
        }
        return nil
    }
}

/// N idle instances of one system.
protocol IdleGroup: AnyObject {
    func start(_ count: Int, runner: URL) throws
    func processIDs() -> [pid_t]
    func allAlive() -> Bool
    /// Bytes charged to the instances' memory cgroups, where they have their own.
    func chargedBytes() -> UInt64?
    func stopAll()
}
