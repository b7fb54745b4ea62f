import Foundation
import Machine
import Results

/// Where the NIC benchmarks' frames go: the in-VMM peer (a memory copy that counts and checks
/// frames, isolating VMM and device-model cost), or a TAP device into the host kernel's network
/// stack with an ordinary UDP socket at the other end, in a network namespace of the run's own.
public enum NetBackend: String, Sendable, CaseIterable {
    case vmm, tap
}

/// One boot's link through the host kernel: a namespace, a TAP device with the host's address,
/// a static neighbour entry for the guest, and the kernel peer the benchmark talks to.
/// Everything goes when it is closed.
final class TAPLink {
    static let interface = "hvbtap0"
    static let hostAddress = IPv4Address("10.77.0.1")!
    static let guestAddress = IPv4Address("10.77.0.2")!
    /// The guest's source MAC (Workloads/guest/common/io_bench.c).
    static let guestMAC: MACAddress = [0x02, 0x68, 0x76, 0x62, 0x00, 0x02]
    static let peerPort: UInt16 = 9000

    let namespace: NetworkNamespace
    /// The VMM's end of the TAP; nil when QEMU attaches to it instead.
    let backend: TAPBackend?
    let peer: KernelUDPPeer
    /// The guest's and the kernel peer's addresses: the job tells the workload to speak IPv4/UDP to it.
    let endpoints: GuestJob.UDPEndpoints

    /// The guest's UDP port (Workloads/guest/common/job.c's default).
    static let guestPort: UInt16 = 40000

    /// What is at the guest's end of the link.
    enum Attachment {
        /// A TAP device the VMM reads and writes (`backend`).
        case vmm
        /// A persistent TAP for QEMU to attach to by name, run inside the namespace through
        /// `namespace.enterCommand`.
        case qemu
        /// A veth pair into a second namespace (`nativeNamespace`) where the native runner, run
        /// through its `enterCommand` (or a container that joins it), owns the guest's address
        /// with an ordinary UDP socket.
        case native
        /// As `native`, but the veth's near end is a port of a bridge that holds the host's
        /// address: the path of a container on Docker's default bridge.
        case bridgedNative
    }

    /// The native runner's namespace, with the veth end that has the guest's address.
    let nativeNamespace: NetworkNamespace?
    static let nativeInterface = "hvbveth1"
    static let peerVethInterface = "hvbveth0"
    static let bridge = "hvbbr0"

    /// - Parameters:
    ///   - mode: the kernel peer's part: sink for the transmit benchmarks, echo for
    ///     request/response, source for the receive benchmarks.
    ///   - sourceFrameLength: the Ethernet frames a source's datagrams make.
    ///   - attachment: what takes the guest's end.
    ///   - peerFallsSilentAfter: the kernel peer stops answering or sending after this many
    ///     datagrams (`RunConfiguration.kernelPeerFallsSilentAfter`, for tests).
    init(
        mode: KernelUDPPeer.Mode, sourceFrameLength: Int = 1514, attachment: Attachment = .vmm,
        peerFallsSilentAfter: Int? = nil
    ) throws {
        namespace = try NetworkNamespace()
        var nativeNamespace: NetworkNamespace?
        do {
            var tap: TAPDevice?
            let interface: String
            switch attachment {
            case .vmm:
                interface = Self.interface
                tap = try namespace.makeTAP(name: interface, address: Self.hostAddress)
            case .qemu:
                interface = Self.interface
                try namespace.makePersistentTAP(name: interface, address: Self.hostAddress)
            case .native:
                interface = Self.peerVethInterface
                let other = try NetworkNamespace()
                nativeNamespace = other
                try namespace.makeVethPair(
                    name: interface, address: Self.hostAddress, peerName: Self.nativeInterface, in: other,
                    peerAddress: Self.guestAddress)
            case .bridgedNative:
                interface = Self.bridge
                let other = try NetworkNamespace()
                nativeNamespace = other
                try namespace.makeVethPair(
                    name: Self.peerVethInterface, address: nil, peerName: Self.nativeInterface, in: other,
                    peerAddress: Self.guestAddress)
                try namespace.makeBridge(Self.bridge, ports: [Self.peerVethInterface], address: Self.hostAddress)
                try namespace.disableIPv6(on: Self.bridge)
            }
            if attachment == .vmm || attachment == .qemu {
                try namespace.disableIPv6(on: interface)
                try namespace.setNeighbour(Self.guestAddress, mac: Self.guestMAC, on: interface)
            }
            let hostMAC = try namespace.macAddress(of: interface)
            peer = try KernelUDPPeer(
                namespace: namespace, mode: mode, address: Self.hostAddress, port: Self.peerPort,
                destination: (Self.guestAddress, Self.guestPort), payloadLength: sourceFrameLength - IPv4Packets.udpOverhead,
                fallsSilentAfter: peerFallsSilentAfter, startsHeld: attachment == .qemu)
            backend = tap.map(TAPBackend.init)
            self.nativeNamespace = nativeNamespace
            endpoints = GuestJob.UDPEndpoints(
                guestAddress: "\(Self.guestAddress)", peerAddress: "\(Self.hostAddress)", peerMAC: Self.text(hostMAC),
                peerPort: Self.peerPort)
        } catch {
            nativeNamespace?.close()
            namespace.close()
            throw error
        }
    }

    /// The link a benchmark needs whose far end plays `role`, for `attachment`; nil, with the
    /// reason to skip, where the host cannot make one (no namespaces, no `/dev/net/tun`, or no
    /// `nsenter` for a process that must run inside).
    static func make(
        for role: BenchmarkDefinition.PeerRole, attachment: Attachment, _ plan: RunPlan
    ) -> Result<TAPLink, BenchmarkRunner.StartProblem> {
        if attachment != .vmm && ProcessRunner.find("nsenter") == nil {
            let who = attachment == .qemu ? "QEMU" : "the native side"
            return .failure(
                .init(description: "the TAP backend runs \(who) through nsenter (util-linux), which is not installed"))
        }
        let mode: KernelUDPPeer.Mode = role == .echo ? .echo : role == .source ? .source : .sink
        do {
            return .success(
                try TAPLink(
                    mode: mode, attachment: attachment, peerFallsSilentAfter: plan.network.peerFallsSilentAfter))
        } catch {
            return .failure(.init(description: "the TAP backend is unavailable here: \(error)"))
        }
    }

    /// Stops the reader and the peer and ends the namespace.
    func close() {
        backend?.stop()
        peer.stop()
        nativeNamespace?.close()
        namespace.close()
    }

    /// Why the run must fail after the guest sent `frames` frames, or nil: a datagram that
    /// arrived damaged, or (sink) fewer datagrams than frames the kernel accepted.
    func problem(afterGuestSent frames: Int) -> String? {
        // QEMU's TAP backend queues rather than refuses: all the guest sent reached the TAP. A
        // native socket's send fails rather than drop, so all it sent left.
        let refused = backend?.framesRefused.load(ordering: .relaxed) ?? 0
        let accepted = (backend?.framesFromGuest.load(ordering: .relaxed) ?? frames) - refused
        if peer.mode == .sink {
            if accepted < frames - refused { return "the TAP took \(accepted) frames, the guest reported \(frames)" }
            // The sink may still be reading what its buffer holds: wait while it makes progress.
            var last = -1
            var idleSince = Date()
            while peer.snapshot.datagrams < accepted && Date().timeIntervalSince(idleSince) < 1 {
                let now = peer.snapshot.datagrams
                if now != last {
                    last = now
                    idleSince = Date()
                }
                usleep(1000)
            }
        }
        let counts = peer.snapshot
        if let error = counts.errors.first { return "the kernel peer found a bad datagram: \(error)" }
        // A datagram the kernel took from the TAP and then dropped (a full socket buffer) is
        // UDP's loss; the benchmark's rate would count it as sent, so the run fails instead.
        if peer.mode == .sink && counts.datagrams < accepted {
            return "the kernel sink received \(counts.datagrams) of the \(accepted) datagrams the TAP took (UDP dropped the rest)"
        }
        return nil
    }

    /// A MAC address as job words and QEMU's options spell it (02:68:76:62:00:02).
    static func text(_ mac: MACAddress) -> String { mac.map { String(format: "%02x", $0) }.joined(separator: ":") }

    /// What the sink saw, for the log.
    var summary: String {
        let counts = peer.snapshot
        let vmm =
            backend.map {
                "\($0.framesFromGuest.load(ordering: .relaxed)) frames from the guest (\($0.framesRefused.load(ordering: .relaxed)) refused by the kernel), \($0.framesToGuest.load(ordering: .relaxed)) to it"
            } ?? (nativeNamespace == nil ? "QEMU's backend" : "the native runner's socket over a veth pair")
        return
            "tap: \(vmm); kernel \(peer.mode.rawValue): \(counts.datagrams) datagrams, \(counts.missing) missing, \(counts.outOfOrder) out of order, \(counts.echoed) echoed"
    }
}
