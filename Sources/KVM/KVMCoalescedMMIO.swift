import CKVM
import Glibc
import Machine
import Synchronization

/// KVM's coalesced MMIO: writes into a registered zone go into a ring page shared with the
/// vCPU mapping instead of exiting to hvbench; the VM applies them before it handles the next
/// exit (`WriteCoalescer`). Reads in a zone still exit. KVM exits normally when the ring is
/// full, so no write is ever dropped.
final class KVMCoalescedMMIO: WriteCoalescer, @unchecked Sendable {
    final class Zone: CoalescedRange, @unchecked Sendable {
        let address: UInt64
        let length: UInt32
        weak var owner: KVMCoalescedMMIO?

        init(owner: KVMCoalescedMMIO, address: UInt64, length: UInt32) {
            self.owner = owner
            self.address = address
            self.length = length
        }

        func cancel() { owner?.remove(self) }
    }

    private let vmFileDescriptor: Int32
    /// The ring page inside the vCPU mapping, which the engine keeps mapped while it lives.
    private let ring: UnsafeMutableRawPointer
    private let pageSize: Int
    /// What owns the mapping the ring is in (the engine): kept alive as long as the ring is used.
    private let mappingOwner: AnyObject
    /// Registered zones, so a cancelled one is unregistered once.
    private let zones = Mutex<[ObjectIdentifier: Zone]>([:])

    init(vmFileDescriptor: Int32, ring: UnsafeMutableRawPointer, pageSize: Int, mappingOwner: AnyObject) {
        self.vmFileDescriptor = vmFileDescriptor
        self.mappingOwner = mappingOwner
        self.ring = ring
        self.pageSize = pageSize
    }

    func coalesce(address: UInt64, length: UInt64) -> (any CoalescedRange)? {
        guard length > 0, length <= UInt64(UInt32.max),
            ckvm_coalesced_mmio(vmFileDescriptor, address, UInt32(length), 0) == 0
        else { return nil }
        let zone = Zone(owner: self, address: address, length: UInt32(length))
        zones.withLock { $0[ObjectIdentifier(zone)] = zone }
        return zone
    }

    private func remove(_ zone: Zone) {
        zones.withLock { table in
            guard table.removeValue(forKey: ObjectIdentifier(zone)) != nil else { return }
            _ = ckvm_coalesced_mmio(vmFileDescriptor, zone.address, zone.length, 1)
        }
    }

    func drain(_ write: (UInt64, UnsafeRawBufferPointer) -> Void) -> Int {
        var applied = 0
        var address: UInt64 = 0
        var length: UInt32 = 0
        var data: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0)
        while withUnsafeMutableBytes(
            of: &data,
            { bytes in
                ckvm_coalesced_take(ring, pageSize, &address, &length, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }) == 1
        {
            withUnsafeBytes(of: &data) { bytes in write(address, UnsafeRawBufferPointer(rebasing: bytes[0..<Int(length)])) }
            applied += 1
        }
        return applied
    }
}
