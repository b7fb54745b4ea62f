import Machine
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
