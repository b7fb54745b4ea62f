import CNUMA

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

    /// Restricts the calling thread to the CPUs of `node`.
    public static func bindCurrentThread(to node: Int) throws {
        try validate(node: node)
        numa_run_on_node(Int32(node))
    }
}
