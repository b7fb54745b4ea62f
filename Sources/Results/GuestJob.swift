/// What one boot of the benchmark guest (or one native run) is told to do: the host's side of the
/// job encoding. The guest kernel and the native runner parse it with the same parser
/// (`Workloads/guest/common/job.c`); every Bench round fills this type, and only `words` writes
/// the `key=value` form (a PVH command line, or the native runner's arguments).
public struct GuestJob: Sendable, Equatable {
    /// The NIC driver the workload uses.
    public enum NIC: String, Sendable, CaseIterable {
        case e1000, virtio
        /// Natively: a UDP socket across the run's veth pair.
        case socket
        /// Natively: the in-process peer.
        case loopback
    }

    /// The disk driver the workload uses.
    public enum Disk: String, Sendable, CaseIterable { case ide, virtio }

    /// The guest's UDP endpoint and its peer's, over a TAP link or a VM pair's bridge.
    public struct UDPEndpoints: Sendable, Equatable {
        public var guestAddress: String
        /// nil: the guest's default MAC.
        public var guestMAC: String?
        /// nil: the guest's default port.
        public var guestPort: UInt16?
        public var peerAddress: String
        public var peerMAC: String
        public var peerPort: UInt16

        public init(
            guestAddress: String, guestMAC: String? = nil, guestPort: UInt16? = nil, peerAddress: String, peerMAC: String,
            peerPort: UInt16
        ) {
            self.guestAddress = guestAddress
            self.guestMAC = guestMAC
            self.guestPort = guestPort
            self.peerAddress = peerAddress
            self.peerMAC = peerMAC
            self.peerPort = peerPort
        }
    }

    /// What a VM pair's serving guest does until it is stopped.
    /// echo, source: the far end of a VM-to-VM benchmark; idle: a process that only waits
    /// (the idle containers of `hvbench density`; the benchmark guest has no idle and fails it).
    public enum Serve: String, Sendable { case echo, source, idle }

    public var bench: String
    public var iterations: UInt64
    public var repetitions: Int
    public var warmups: Int
    /// The TSC rate the workload converts cycles with (the guest has no other clock).
    public var tscKilohertz: Int?
    public var sizeBytes: UInt64?
    public var slowdownPercent: UInt64 = 0
    public var nic: NIC?
    public var disk: Disk?
    /// Natively: the image's path, and whether it is opened read-only.
    public var diskPath: String?
    public var diskReadOnly = false
    /// Sectors of the image the disk benchmarks use.
    public var regionSectors: UInt64?
    /// Whether reads are checked against hvbench's pattern (false: a user's image).
    public var diskVerify = true
    public var udp: UDPEndpoints?
    /// Natively with the in-process peer: the role it plays.
    public var loopbackPeer: BenchmarkDefinition.PeerRole?
    public var serve: Serve?
    /// The litmus self-test's deliberate violation.
    public var injectViolation = false
    /// The VM has a virtio-balloon for the guest's driver (the memory benchmarks).
    public var balloon = false

    public init(
        bench: String, iterations: UInt64, repetitions: Int, warmups: Int, tscKilohertz: Int? = nil, sizeBytes: UInt64? = nil
    ) {
        self.bench = bench
        self.iterations = iterations
        self.repetitions = repetitions
        self.warmups = warmups
        self.tscKilohertz = tscKilohertz
        self.sizeBytes = sizeBytes
    }

    /// A suite entry's job, with the boot's repetitions and warm-ups (a boot round boots once per sample).
    public init(_ entry: Suite.Entry, repetitions: Int? = nil, warmups: Int? = nil, tscKilohertz: Int?) {
        self.init(
            bench: entry.id, iterations: entry.iterations, repetitions: repetitions ?? entry.repetitions,
            warmups: warmups ?? entry.warmups, tscKilohertz: tscKilohertz, sizeBytes: entry.sizeBytes)
    }

    /// The `key=value` words, each key once, in a fixed order.
    public var words: [String] {
        var words = [
            "bench=\(bench)", "iterations=\(iterations)", "repetitions=\(repetitions)", "warmups=\(warmups)",
        ]
        if let tscKilohertz { words.append("tsc_khz=\(tscKilohertz)") }
        if let sizeBytes { words.append("size=\(sizeBytes)") }
        if slowdownPercent > 0 { words.append("slowdown_percent=\(slowdownPercent)") }
        if let nic { words.append("nic=\(nic.rawValue)") }
        if let disk { words.append("disk=\(disk.rawValue)") }
        if let diskPath { words.append("disk_path=\(diskPath)") }
        if diskReadOnly { words.append("disk_readonly=1") }
        if let regionSectors { words.append("region_sectors=\(regionSectors)") }
        if !diskVerify { words.append("disk_verify=0") }
        if let udp {
            words += ["udp=1", "guest_ip=\(udp.guestAddress)"]
            if let mac = udp.guestMAC { words.append("guest_mac=\(mac)") }
            if let port = udp.guestPort { words.append("guest_port=\(port)") }
            words += ["peer_ip=\(udp.peerAddress)", "peer_mac=\(udp.peerMAC)", "peer_port=\(udp.peerPort)"]
        }
        if let loopbackPeer { words.append("peer=\(loopbackPeer.rawValue)") }
        if let serve { words.append("serve=\(serve.rawValue)") }
        if injectViolation { words.append("inject_violation=1") }
        if balloon { words.append("balloon=1") }
        return words
    }

    /// The guest's kernel command line.
    public var commandLine: String { words.joined(separator: " ") }
}
