#if canImport(Glibc)
    import Glibc
#endif
import CNUMA

/// Errors a guest (or a loader) can cause by naming memory it does not have.
public enum GuestMemoryError: Error, Equatable, CustomStringConvertible {
    case outOfRange(address: UInt64, length: Int, size: UInt64)
    case allocationFailed(bytes: UInt64, errno: Int32)
    case numaUnavailable
    case invalidNUMANode(Int, available: ClosedRange<Int>)
    case mergingRefused(errno: Int32)

    public var description: String {
        switch self {
        case .outOfRange(let address, let length, let size):
            return
                "guest access of \(length) bytes at 0x\(String(address, radix: 16)) is outside guest RAM (0..0x\(String(size, radix: 16)))"
        case .allocationFailed(let bytes, let errno):
            return "cannot map \(bytes) bytes of guest RAM: \(String(cString: strerror(errno)))"
        case .numaUnavailable:
            return "NUMA placement requested but libnuma reports NUMA is unavailable on this host"
        case .mergingRefused(let errno):
            return "the kernel refused to offer guest RAM to same-page merging (KSM): \(String(cString: strerror(errno)))"
        case .invalidNUMANode(let node, let available):
            return "NUMA node \(node) does not exist on this host (nodes \(available.lowerBound)...\(available.upperBound))"
        }
    }
}

/// Guest RAM: one anonymous mapping that starts at guest-physical address 0.
///
/// Every access by a device or loader goes through `bytes(at:count:)`, which refuses any range
/// that is not entirely inside the mapping, so a guest that hands a device a wild address gets
/// an error instead of a host memory access.
public final class GuestMemory: @unchecked Sendable {
    public let size: UInt64
    public let base: UnsafeMutableRawPointer

    public init(size: UInt64, numaNode: Int? = nil) throws {
        let pointer = mmap(
            nil, Int(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let pointer, pointer != MAP_FAILED else {
            throw GuestMemoryError.allocationFailed(bytes: size, errno: errno)
        }
        self.size = size
        self.base = pointer
        if let numaNode {
            do {
                try NUMAPlacement.validate(node: numaNode)
            } catch {
                munmap(pointer, Int(size))
                throw error
            }
            numa_tonode_memory(pointer, Int(size), Int32(numaNode))
        }
    }

    deinit { munmap(base, Int(size)) }

    /// Gives the host pages of `count` bytes at `address` back (MADV_DONTNEED: the host frees
    /// them; the next touch, by the guest or a device, finds a fresh zeroed page). Both must be
    /// page-aligned and inside guest RAM.
    public func discard(at address: UInt64, count: Int) throws {
        let region = try bytes(at: address, count: count)
        guard address % 4096 == 0, count % 4096 == 0 else {
            throw GuestMemoryError.outOfRange(address: address, length: count, size: size)
        }
        if count > 0 { madvise(region.baseAddress, count, MADV_DONTNEED) }
    }

    /// Offers all of guest RAM to the kernel's same-page merging (MADV_MERGEABLE): KSM may then
    /// map pages whose content is alike, in this VM or another, to one host page, copied again
    /// on the first write (as QEMU's mem-merge does).
    public func offerToPageSharing() throws {
        guard madvise(base, Int(size), MADV_MERGEABLE) == 0 else {
            throw GuestMemoryError.mergingRefused(errno: errno)
        }
    }

    /// Bytes of all of guest RAM the host holds in memory now (`residentPages` over the whole).
    public var residentBytes: UInt64 { UInt64((try? residentPages(at: 0, count: Int(size))) ?? 0) * 4096 }

    /// How many of the pages of `count` bytes at `address` the host holds in memory (mincore):
    /// what discarding gives back, measured on guest RAM alone.
    public func residentPages(at address: UInt64, count: Int) throws -> Int {
        let region = try bytes(at: address, count: count)
        let pages = (count + 4095) / 4096
        var vector = [UInt8](repeating: 0, count: pages)
        guard mincore(region.baseAddress, count, &vector) == 0 else { return 0 }
        return vector.reduce(0) { $0 + Int($1 & 1) }
    }

    /// The host view of `count` guest bytes at `address`, or an error when any of it lies
    /// outside guest RAM (including arithmetic overflow of address + count).
    @inline(__always)
    public func bytes(at address: UInt64, count: Int) throws -> UnsafeMutableRawBufferPointer {
        let (end, overflow) = address.addingReportingOverflow(UInt64(count))
        guard count >= 0, !overflow, end <= size else {
            throw GuestMemoryError.outOfRange(address: address, length: count, size: size)
        }
        return UnsafeMutableRawBufferPointer(start: base + Int(address), count: count)
    }

    public func write(_ data: some Collection<UInt8>, at address: UInt64) throws {
        let destination = try bytes(at: address, count: data.count)
        destination.copyBytes(from: data)
    }

    public func read(at address: UInt64, count: Int) throws -> [UInt8] {
        Array(try bytes(at: address, count: count))
    }

    public func writeValue<T: FixedWidthInteger>(_ value: T, at address: UInt64) throws {
        let destination = try bytes(at: address, count: MemoryLayout<T>.size)
        destination.storeBytes(of: value.littleEndian, as: T.self)
    }

    public func readValue<T: FixedWidthInteger>(_: T.Type, at address: UInt64) throws -> T {
        let source = try bytes(at: address, count: MemoryLayout<T>.size)
        return T(littleEndian: source.loadUnaligned(as: T.self))
    }

    /// Reads a NUL-terminated string of at most `limit` bytes.
    public func readCString(at address: UInt64, limit: Int = 4096) throws -> String {
        var result: [UInt8] = []
        for offset in 0..<UInt64(limit) {
            let byte: UInt8 = try readValue(UInt8.self, at: address + offset)
            if byte == 0 { break }
            result.append(byte)
        }
        return String(decoding: result, as: UTF8.self)
    }
}
