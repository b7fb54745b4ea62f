/// The few ACPI Machine Language constructs hvbench's DSDT needs (ACPI 6.5 §20: the AML
/// grammar; §6.4: resource descriptors), encoded as bytes. Only data objects: no methods, so an
/// OS's interpreter evaluates nothing but names.
enum AML {
    static func name(_ name: String, _ value: [UInt8]) -> [UInt8] { [0x08] + nameSegment(name) + value }

    static func scope(_ path: String, _ body: [UInt8]) -> [UInt8] { [0x10] + package(nameString(path) + body) }

    static func device(_ name: String, _ body: [UInt8]) -> [UInt8] { [0x5B, 0x82] + package(nameSegment(name) + body) }

    static func packageObject(_ elements: [[UInt8]]) -> [UInt8] {
        [0x12] + package([UInt8(elements.count)] + elements.flatMap { $0 })
    }

    static func buffer(_ bytes: [UInt8]) -> [UInt8] { [0x11] + package(integer(UInt64(bytes.count)) + bytes) }

    /// The shortest integer encoding: Zero, One, Byte/Word/DWord/QWord constants.
    static func integer(_ value: UInt64) -> [UInt8] {
        switch value {
        case 0: return [0x00]
        case 1: return [0x01]
        case ...0xFF: return [0x0A, UInt8(value)]
        case ...0xFFFF: return [0x0B] + le(value, 2)
        case ...0xFFFF_FFFF: return [0x0C] + le(value, 4)
        default: return [0x0E] + le(value, 8)
        }
    }

    /// A compressed EISA ID such as "PNP0A03", as a DWord constant.
    static func eisaID(_ id: String) -> [UInt8] {
        let characters = Array(id.utf8)
        let vendor = characters[0..<3].map { UInt16($0 - 0x40) & 0x1F }
        let compressed = vendor[0] << 10 | vendor[1] << 5 | vendor[2]
        let product = UInt16(characters[3...].reduce(0) { $0 << 4 | UInt32(hexDigit($1)) })
        return [0x0C, UInt8(compressed >> 8), UInt8(compressed & 0xFF), UInt8(product >> 8), UInt8(product & 0xFF)]
    }

    // MARK: Resource descriptors (ResourceTemplate contents, ended by `endTag`)

    /// Address-space descriptor flags: produced by the bridge, positive decode, fixed min and max.
    private static let bridgeWindow: UInt8 = 0x0C

    static func busNumbers(_ range: ClosedRange<UInt64>) -> [UInt8] {
        [0x88, 0x0D, 0x00, 2, bridgeWindow, 0] + le(0, 2) + le(range.lowerBound, 2) + le(range.upperBound, 2) + le(0, 2)
            + le(UInt64(range.count), 2)
    }

    /// An I/O port window the bridge decodes (both ISA ranges).
    static func ioWindow(_ range: ClosedRange<UInt64>) -> [UInt8] {
        [0x88, 0x0D, 0x00, 1, bridgeWindow, 3] + le(0, 2) + le(range.lowerBound, 2) + le(range.upperBound, 2) + le(0, 2)
            + le(UInt64(range.count), 2)
    }

    /// Ports the bridge itself consumes (0xCF8 for configuration mechanism 1).
    static func ioPorts(_ base: UInt16, count: UInt8) -> [UInt8] {
        [0x47, 0x01] + le(UInt64(base), 2) + le(UInt64(base), 2) + [1, count]
    }

    /// A 32-bit memory window, read-write, not cacheable.
    static func memoryWindow(_ range: ClosedRange<UInt64>) -> [UInt8] {
        [0x87, 0x17, 0x00, 0, bridgeWindow, 0x01] + le(0, 4) + le(range.lowerBound, 4) + le(range.upperBound, 4)
            + le(0, 4) + le(UInt64(range.count), 4)
    }

    static let endTag: [UInt8] = [0x79, 0x00]

    // MARK: Encoding

    /// PkgLength (which counts itself) followed by `body`.
    static func package(_ body: [UInt8]) -> [UInt8] {
        var total = body.count + 1
        if total < 0x40 { return [UInt8(total)] + body }
        for extra in 1...3 {
            total = body.count + 1 + extra
            if total < 1 << (4 + 8 * extra) {
                var bytes = [UInt8(extra << 6) | UInt8(total & 0xF)]
                for index in 0..<extra { bytes.append(UInt8(truncatingIfNeeded: total >> (4 + 8 * index))) }
                return bytes + body
            }
        }
        preconditionFailure("an AML package over 256 MiB")
    }

    /// A four-character name segment, padded with underscores.
    static func nameSegment(_ name: String) -> [UInt8] {
        let bytes = Array(name.utf8.prefix(4))
        return bytes + [UInt8](repeating: UInt8(ascii: "_"), count: 4 - bytes.count)
    }

    /// `\NAME` (from the root) or `NAME`.
    static func nameString(_ path: String) -> [UInt8] {
        path.hasPrefix("\\") ? [0x5C] + nameSegment(String(path.dropFirst())) : nameSegment(path)
    }

    private static func hexDigit(_ character: UInt8) -> UInt8 {
        character <= 0x39 ? character - 0x30 : (character | 0x20) - 0x61 + 10
    }

    /// `value` as `count` little-endian bytes (FirmwareTables' encoding, by width).
    private static func le(_ value: UInt64, _ count: Int) -> [UInt8] {
        Array(FirmwareTables.le(value).prefix(count))
    }
}
