/// A device on the port-I/O or MMIO bus. Offsets are relative to the device's base address;
/// `data` is the access itself (1, 2, 4 or 8 bytes, little endian).
public protocol BusDevice: AnyObject {
    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func write(offset: UInt64, from data: UnsafeRawBufferPointer)
}

public enum BusError: Error, Equatable, CustomStringConvertible {
    case overlap(base: UInt64, length: UInt64, existing: UInt64)
    case emptyRange

    public var description: String {
        switch self {
        case .overlap(let base, let length, let existing):
            return "bus range 0x\(String(base, radix: 16))+\(length) overlaps the device at 0x\(String(existing, radix: 16))"
        case .emptyRange:
            return "a bus range must have a non-zero length"
        }
    }
}

/// Maps address ranges to devices. One instance serves port I/O, another MMIO.
///
/// Lookups are a binary search over ranges sorted by base; accesses nobody claims read as all
/// ones (like an open PC bus) and are counted, because "unclaimed access" is itself something
/// the benchmarks measure.
public final class IOBus: @unchecked Sendable {
    struct Mapping {
        let base: UInt64
        let length: UInt64
        let device: any BusDevice
    }

    private(set) var mappings: [Mapping] = []
    public private(set) var unclaimedReads = 0

    public init() {}

    public func insert(_ device: any BusDevice, at base: UInt64, length: UInt64) throws {
        guard length > 0 else { throw BusError.emptyRange }
        for mapping in mappings
        where base < mapping.base &+ mapping.length && mapping.base < base &+ length {
            throw BusError.overlap(base: base, length: length, existing: mapping.base)
        }
        mappings.append(Mapping(base: base, length: length, device: device))
        mappings.sort { $0.base < $1.base }
    }

    /// Removes every range of `device` (a PCI BAR being moved or disabled).
    public func remove(_ device: any BusDevice) {
        mappings.removeAll { $0.device === device }
    }

    @inline(__always)
    func find(_ address: UInt64) -> Mapping? {
        var low = 0
        var high = mappings.count
        while low < high {
            let middle = (low + high) / 2
            if mappings[middle].base <= address { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        let candidate = mappings[low - 1]
        return address - candidate.base < candidate.length ? candidate : nil
    }

    /// Returns whether a device claimed the access.
    @discardableResult
    public func read(_ address: UInt64, into data: UnsafeMutableRawBufferPointer) -> Bool {
        guard let mapping = find(address) else {
            for index in data.indices { data[index] = 0xFF }
            unclaimedReads += 1
            return false
        }
        mapping.device.read(offset: address - mapping.base, into: data)
        return true
    }

    @discardableResult
    public func write(_ address: UInt64, from data: UnsafeRawBufferPointer) -> Bool {
        guard let mapping = find(address) else { return false }  // written to nothing, like an open bus
        mapping.device.write(offset: address - mapping.base, from: data)
        return true
    }
}

extension UnsafeRawBufferPointer {
    /// The access as an integer (little endian, zero-extended), for register-style devices.
    @inline(__always)
    public var littleEndianValue: UInt64 {
        var value: UInt64 = 0
        for (index, byte) in self.prefix(8).enumerated() { value |= UInt64(byte) << (8 * index) }
        return value
    }
}

extension UnsafeMutableRawBufferPointer {
    /// Stores the low bytes of `value` into the access, little endian.
    @inline(__always)
    public func storeLittleEndian(_ value: UInt64) {
        for index in indices { self[index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    }
}
