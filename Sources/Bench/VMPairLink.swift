import Foundation
import Machine
import Results

/// The virtual switch of the VM-to-VM benchmarks: a Linux bridge in a network namespace of the
/// run's own, with one TAP port per guest. The measured guest (A) and the guest that serves it
/// (B, an echo or a stream source) address each other by IPv4 and MAC; the bridge learns the MACs
/// and switches frames between the ports in the host kernel, as a hypervisor's software switch
/// does. No address is on the host's side: the host kernel only switches. Everything goes when
/// it is closed.
final class VMPairLink {
    static let bridge = "hvbbr0"
    static let measuredInterface = "hvbtap0"
    static let servingInterface = "hvbtap1"
    static let measuredAddress = IPv4Address("10.77.0.2")!
    static let servingAddress = IPv4Address("10.77.0.3")!
    static let measuredMAC: MACAddress = TAPLink.guestMAC
    static let servingMAC: MACAddress = [0x02, 0x68, 0x76, 0x62, 0x00, 0x03]
    static let measuredPort: UInt16 = 40000
    static let servingPort: UInt16 = 9000

    let namespace: NetworkNamespace
    /// The VMM ends of the two ports; nil where QEMU attaches to them by name instead.
    let measured: TAPBackend?
    let serving: TAPBackend?

    /// - Parameter forQEMU: the TAPs persist for two QEMU processes (run inside the namespace
    ///   through `namespace.enterCommand`) to attach to by name.
    init(forQEMU: Bool = false) throws {
        namespace = try NetworkNamespace()
        do {
            var devices: [TAPDevice] = []
            for name in [Self.measuredInterface, Self.servingInterface] {
                if forQEMU {
                    try namespace.makePersistentTAP(name: name, address: nil)
                } else {
                    devices.append(try namespace.makeTAP(name: name, address: nil))
                }
                try namespace.disableIPv6(on: name)
            }
            try namespace.makeBridge(Self.bridge, ports: [Self.measuredInterface, Self.servingInterface])
            try namespace.disableIPv6(on: Self.bridge)
            measured = devices.first.map(TAPBackend.init)
            serving = devices.dropFirst().first.map(TAPBackend.init)
        } catch {
            namespace.close()
            throw error
        }
    }

    func close() {
        measured?.stop()
        serving?.stop()
        namespace.close()
    }

    /// The measured guest's endpoints: it talks to the serving guest.
    static let measuredEndpoints = GuestJob.UDPEndpoints(
        guestAddress: "\(measuredAddress)", guestPort: measuredPort, peerAddress: "\(servingAddress)",
        peerMAC: TAPLink.text(servingMAC), peerPort: servingPort)

    /// The serving guest's endpoints: its own address and MAC, the measured guest as its peer.
    static let servingEndpoints = GuestJob.UDPEndpoints(
        guestAddress: "\(servingAddress)", guestMAC: TAPLink.text(servingMAC), guestPort: servingPort,
        peerAddress: "\(measuredAddress)", peerMAC: TAPLink.text(measuredMAC), peerPort: measuredPort)

    /// The serving guest's job: what it does (`serve=echo` or `serve=source`) until it is
    /// stopped. The echo takes net.rr-irq's interrupt-driven driver, so it sleeps between
    /// requests as a server VM does instead of spinning on one of the host's CPUs beside the
    /// measured VM; the source is busy anyway and polls.
    static func servingJob(_ role: BenchmarkDefinition.PeerRole, for measured: GuestJob) -> GuestJob {
        var job = measured
        job.repetitions = 1
        job.warmups = 0
        if role != .source { job.bench = "net.rr-irq" }
        job.serve = role == .source ? .source : .echo
        job.udp = servingEndpoints
        return job
    }

    /// What the ports carried, for the log.
    var summary: String {
        guard let measured, let serving else { return "bridge \(Self.bridge): QEMU's backends" }
        func counts(_ backend: TAPBackend) -> String {
            "\(backend.framesFromGuest.load(ordering: .relaxed)) frames from the guest, \(backend.framesToGuest.load(ordering: .relaxed)) to it"
        }
        return "bridge \(Self.bridge): measured guest \(counts(measured)); serving guest \(counts(serving))"
    }
}
