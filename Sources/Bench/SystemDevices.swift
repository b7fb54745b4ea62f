import Machine
import VMM
import Results

extension SystemKind {
    /// The devices a VM mode gives the guest.
    public var ioKind: IOConfiguration.Kind? {
        switch self {
        case .hardwareAssist, .fullEmulation: return .legacy
        case .paravirtIO, .emulatorVirtio: return .virtio
        case .native: return nil
        }
    }
}

extension NetworkPeer.Mode {
    /// The VMM's peer plays the role the catalogue gives a network benchmark.
    init(_ role: BenchmarkDefinition.PeerRole) {
        switch role {
        case .sink: self = .sink
        case .source: self = .source
        case .echo: self = .echo
        }
    }
}
