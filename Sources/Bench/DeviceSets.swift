import Machine
import Results
import VMM

/// What each device set is called where it is not hvbench's own VMM: the drivers a workload is
/// told to use, and QEMU's equivalents. (hvbench's own device models for a set are placed by
/// `IOConfiguration.devices(on:)`.) A new device set joins these and that list.
extension SystemDefinition.Devices {
    /// The guest's NIC driver.
    var guestNIC: GuestJob.NIC {
        switch self {
        case .legacy: return .e1000
        case .virtio: return .virtio
        }
    }

    /// The guest's disk driver.
    var guestDisk: GuestJob.Disk {
        switch self {
        case .legacy: return .ide
        case .virtio: return .virtio
        }
    }

    /// QEMU's NIC model.
    var qemuNIC: String {
        switch self {
        case .legacy: return "e1000"
        case .virtio: return "virtio-net-pci"
        }
    }

    /// QEMU's options for a raw image drive (`file` is QEMU's `file=...` value list).
    func qemuDrive(_ file: String) -> [String] {
        switch self {
        case .legacy: return ["-drive", "\(file),if=ide"]
        case .virtio: return ["-drive", "\(file),if=none,id=d0", "-device", "virtio-blk-pci,drive=d0"]
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
