/// OS-level virtualization (OpenVZ's row in the hypervisor debates): the native runner inside an
/// OCI bundle started by a real runtime, sharing the host's kernel. The variants are what users
/// compare containers on: the runtime, the network path and a CPU quota.
public struct ContainerShape: Sendable, Hashable {
    /// The OCI runtime that creates and starts the container.
    public enum Runtime: String, Sendable, Hashable, CaseIterable { case crun, runc }

    /// How the container reaches the network benchmarks' kernel peer.
    public enum Network: String, Sendable, Hashable {
        /// Joins the native runner's own namespace: the same veth to the same peer as native,
        /// as Docker's `--net=host` shares the host's stack.
        case shared
        /// A namespace of the container's own whose veth ends on a Linux bridge in the peer's
        /// namespace (Docker's default bridge, without the NAT to another machine).
        case bridge
    }

    public var runtime: Runtime
    public var network: Network
    /// A CFS bandwidth quota of as many CPUs as a VM running the benchmark gets vCPUs: one that
    /// does not bind, so what it costs is the throttling machinery.
    public var cpuQuota: Bool

    public init(runtime: Runtime, network: Network = .shared, cpuQuota: Bool = false) {
        self.runtime = runtime
        self.network = network
        self.cpuQuota = cpuQuota
    }
}

extension SystemDefinition {
    public static let container = SystemDefinition(
        name: "container", runner: .container(ContainerShape(runtime: .crun)),
        summary: "the native runner in an OCI container under crun (own pid/mount/ipc/uts namespaces, cgroup limits)",
        colour: "#17becf", comparedWith: ["paravirt-io"])

    public static let containerBridge = SystemDefinition(
        name: "container-bridge", runner: .container(ContainerShape(runtime: .crun, network: .bridge)),
        summary: "container with a network namespace of its own, over a veth and a bridge", colour: "#9edae5",
        comparedWith: ["container"])

    public static let containerQuota = SystemDefinition(
        name: "container-quota", runner: .container(ContainerShape(runtime: .crun, cpuQuota: true)),
        summary: "container with a CFS CPU quota of the CPUs a VM would get", colour: "#393b79",
        comparedWith: ["container"])

    /// runc, the reference runtime, as a peer of crun (chosen with `--peer`).
    public static let containerRunc = SystemDefinition(
        name: "container-runc", runner: .container(ContainerShape(runtime: .runc)),
        summary: "the container system under runc instead of crun", colour: "#7f7f7f", comparedWith: ["container"])
}
