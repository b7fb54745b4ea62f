import CNUMA

#if canImport(Glibc)
    import Glibc
#endif

/// A CPU the user asked threads to be pinned to, that this host does not have or will not give.
public enum PinningError: Error, Equatable, CustomStringConvertible {
    case noSuchCPU(Int, available: Int)
    case refused(cpu: Int, errno: Int32)

    public var description: String {
        switch self {
        case .noSuchCPU(let cpu, let available):
            return "--pin: CPU \(cpu) does not exist on this host (CPUs 0...\(available - 1))"
        case .refused(let cpu, let errno):
            return "cannot pin a thread to CPU \(cpu): \(String(cString: strerror(errno)))"
        }
    }
}

/// Thread and memory placement on NUMA nodes through libnuma.
public enum NUMAPlacement {
    public static var isAvailable: Bool { numa_available() >= 0 }

    /// Node ids that exist on this host, e.g. [0] on a single-node machine.
    public static var nodes: [Int] {
        guard isAvailable else { return [] }
        return (0...Int(numa_max_node())).filter { numa_node_size64(Int32($0), nil) > 0 }
    }

    public static func memory(ofNode node: Int) -> (total: Int64, free: Int64) {
        var free: Int64 = 0
        let total = numa_node_size64(Int32(node), &free)
        return (total, free)
    }

    public static func validate(node: Int) throws {
        guard isAvailable else { throw GuestMemoryError.numaUnavailable }
        let known = nodes
        guard known.contains(node) else {
            throw GuestMemoryError.invalidNUMANode(node, available: (known.min() ?? 0)...(known.max() ?? 0))
        }
    }

    /// CPUs this host has (numbered 0 ..< count).
    public static var configuredCPUs: Int { max(1, Int(numa_num_configured_cpus())) }

    /// The NUMA node `cpu` belongs to, where libnuma can tell.
    public static func node(ofCPU cpu: Int) -> Int? {
        guard isAvailable else { return nil }
        let node = numa_node_of_cpu(Int32(cpu))
        return node >= 0 ? Int(node) : nil
    }

    public static func validate(cpus: [Int]) throws {
        let available = configuredCPUs
        if let bad = cpus.first(where: { !(0..<available).contains($0) }) {
            throw PinningError.noSuchCPU(bad, available: available)
        }
    }

    /// Restricts the calling thread to `cpu` alone.
    public static func pinCurrentThread(to cpu: Int) throws {
        try validate(cpus: [cpu])
        guard let mask = numa_allocate_cpumask() else { throw PinningError.refused(cpu: cpu, errno: ENOMEM) }
        defer { numa_bitmask_free(mask) }
        numa_bitmask_setbit(mask, UInt32(cpu))
        guard numa_sched_setaffinity(0, mask) == 0 else { throw PinningError.refused(cpu: cpu, errno: errno) }
    }

    /// The CPU the calling thread runs on now.
    public static var currentCPU: Int { Int(cnuma_current_cpu()) }

    /// Restricts the calling thread to the CPUs of `node`.
    public static func bindCurrentThread(to node: Int) throws {
        try validate(node: node)
        numa_run_on_node(Int32(node))
    }
}
