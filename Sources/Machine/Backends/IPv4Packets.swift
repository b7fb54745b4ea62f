/// Ethernet frames carrying IPv4/UDP and ARP, as the guest's frames on a TAP link are: built with
/// valid header and UDP checksums, and parsed only when every length and checksum is right.
/// Pure byte work, shared by the kernel peers' tests and the frame checks.
public struct IPv4Address: Hashable, Sendable, CustomStringConvertible {
    /// Host byte order: 10.0.0.1 is 0x0A00_0001.
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    /// "a.b.c.d"; nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }), let byte = UInt8(part)
            else { return nil }
            value = value << 8 | UInt32(byte)
        }
        self.value = value
    }

    public var description: String { (0..<4).map { String((value >> (24 - 8 * $0)) & 0xFF) }.joined(separator: ".") }
    var bytes: [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) } }
}

public typealias MACAddress = [UInt8]

public enum IPv4Packets {
    public static let ethernetHeaderLength = 14
    public static let ipv4HeaderLength = 20
    public static let udpHeaderLength = 8
    /// Ethernet + IPv4 (no options) + UDP.
    public static let udpOverhead = ethernetHeaderLength + ipv4HeaderLength + udpHeaderLength
    public static let broadcastMAC: MACAddress = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]

    /// A UDP datagram from the guest's or the peer's side.
    public struct Datagram: Equatable, Sendable {
        public var sourceMAC: MACAddress
        public var destinationMAC: MACAddress
        public var source: IPv4Address
        public var destination: IPv4Address
        public var sourcePort: UInt16
        public var destinationPort: UInt16
        public var payload: [UInt8]

        public init(
            sourceMAC: MACAddress, destinationMAC: MACAddress, source: IPv4Address, destination: IPv4Address,
            sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8]
        ) {
            self.sourceMAC = sourceMAC
            self.destinationMAC = destinationMAC
            self.source = source
            self.destination = destination
            self.sourcePort = sourcePort
            self.destinationPort = destinationPort
            self.payload = payload
        }
    }

    /// The Internet checksum (RFC 1071) of `bytes`, folded into `initial` (a partial sum).
    public static func checksum<C: Collection>(_ bytes: C, initial: UInt32 = 0) -> UInt16 where C.Element == UInt8 {
        var sum = initial
        var high = true
        for byte in bytes {
            sum &+= high ? UInt32(byte) << 8 : UInt32(byte)
            high.toggle()
        }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }

    /// The IPv4 pseudo-header's partial sum for a UDP checksum.
    static func pseudoHeaderSum(_ source: IPv4Address, _ destination: IPv4Address, udpLength: Int) -> UInt32 {
        (source.value >> 16) + (source.value & 0xFFFF) + (destination.value >> 16) + (destination.value & 0xFFFF) + 17
            + UInt32(udpLength)
    }

    static func put16(_ value: UInt16, into frame: inout [UInt8], at offset: Int) {
        frame[offset] = UInt8(value >> 8)
        frame[offset + 1] = UInt8(truncatingIfNeeded: value)
    }

    static func put32(_ value: UInt32, into frame: inout [UInt8], at offset: Int) {
        put16(UInt16(value >> 16), into: &frame, at: offset)
        put16(UInt16(truncatingIfNeeded: value), into: &frame, at: offset + 2)
    }

    static func read16(_ frame: [UInt8], _ offset: Int) -> UInt16 { UInt16(frame[offset]) << 8 | UInt16(frame[offset + 1]) }
    static func read32(_ frame: [UInt8], _ offset: Int) -> UInt32 {
        UInt32(read16(frame, offset)) << 16 | UInt32(read16(frame, offset + 2))
    }

    /// An Ethernet frame with the datagram: IPv4 header checksum and UDP checksum filled in.
    public static func frame(_ datagram: Datagram, identification: UInt16 = 0) -> [UInt8] {
        let udpLength = udpHeaderLength + datagram.payload.count
        let totalLength = ipv4HeaderLength + udpLength
        var frame = datagram.destinationMAC + datagram.sourceMAC + [0x08, 0x00]
        frame += [0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0] + datagram.source.bytes + datagram.destination.bytes
        put16(UInt16(totalLength), into: &frame, at: 16)
        put16(identification, into: &frame, at: 18)
        put16(checksum(frame[14..<34]), into: &frame, at: 24)
        frame += [0, 0, 0, 0, 0, 0, 0, 0] + datagram.payload
        put16(datagram.sourcePort, into: &frame, at: 34)
        put16(datagram.destinationPort, into: &frame, at: 36)
        put16(UInt16(udpLength), into: &frame, at: 38)
        var udpChecksum = checksum(
            frame[34...], initial: pseudoHeaderSum(datagram.source, datagram.destination, udpLength: udpLength))
        if udpChecksum == 0 { udpChecksum = 0xFFFF }  // 0 means "no checksum"
        put16(udpChecksum, into: &frame, at: 40)
        return frame
    }

    /// Why a frame is not a valid IPv4/UDP datagram, or the datagram.
    public static func parseUDP(_ frame: [UInt8]) -> Result<Datagram, ParseError> {
        guard frame.count >= udpOverhead else { return .failure(.init("runt frame of \(frame.count) bytes")) }
        guard frame[12] == 0x08, frame[13] == 0x00 else { return .failure(.init("not IPv4 (ethertype \(read16(frame, 12)))")) }
        guard frame[14] == 0x45 else { return .failure(.init("IPv4 header with options or another version")) }
        let totalLength = Int(read16(frame, 16))
        guard totalLength >= ipv4HeaderLength + udpHeaderLength, ethernetHeaderLength + totalLength <= frame.count else {
            return .failure(.init("IPv4 total length \(totalLength) does not fit the \(frame.count)-byte frame"))
        }
        guard read16(frame, 20) & 0x3FFF == 0 else { return .failure(.init("an IPv4 fragment")) }
        guard frame[23] == 17 else { return .failure(.init("not UDP (protocol \(frame[23]))")) }
        guard checksum(frame[14..<34]) == 0 else { return .failure(.init("bad IPv4 header checksum")) }
        let source = IPv4Address(read32(frame, 26))
        let destination = IPv4Address(read32(frame, 30))
        let udpLength = Int(read16(frame, 38))
        guard udpLength == totalLength - ipv4HeaderLength else {
            return .failure(.init("UDP length \(udpLength) disagrees with IPv4's \(totalLength - ipv4HeaderLength)"))
        }
        let udp = frame[34..<(34 + udpLength)]
        if read16(frame, 40) != 0 {
            guard checksum(udp, initial: pseudoHeaderSum(source, destination, udpLength: udpLength)) == 0 else {
                return .failure(.init("bad UDP checksum"))
            }
        }
        return .success(
            Datagram(
                sourceMAC: Array(frame[6..<12]), destinationMAC: Array(frame[0..<6]), source: source,
                destination: destination, sourcePort: read16(frame, 34), destinationPort: read16(frame, 36),
                payload: Array(frame[42..<(34 + udpLength)])))
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    // MARK: ARP

    /// An ARP request or reply for IPv4 over Ethernet.
    public struct ARP: Equatable, Sendable {
        public var isReply: Bool
        public var senderMAC: MACAddress
        public var sender: IPv4Address
        public var targetMAC: MACAddress
        public var target: IPv4Address
    }

    public static func frame(_ arp: ARP) -> [UInt8] {
        var frame = (arp.isReply ? arp.targetMAC : broadcastMAC) + arp.senderMAC + [0x08, 0x06]
        frame += [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, arp.isReply ? 2 : 1]
        frame += arp.senderMAC + arp.sender.bytes + arp.targetMAC + arp.target.bytes
        return frame + [UInt8](repeating: 0, count: max(0, 60 - frame.count))  // Ethernet minimum
    }

    public static func parseARP(_ frame: [UInt8]) -> ARP? {
        guard frame.count >= 42, frame[12] == 0x08, frame[13] == 0x06, read16(frame, 14) == 1, read16(frame, 16) == 0x0800,
            frame[18] == 6, frame[19] == 4, let operation = [1: false, 2: true][read16(frame, 20)]
        else { return nil }
        return ARP(
            isReply: operation, senderMAC: Array(frame[22..<28]), sender: IPv4Address(read32(frame, 28)),
            targetMAC: Array(frame[32..<38]), target: IPv4Address(read32(frame, 38)))
    }

    /// The reply a host owning `address` at `mac` gives to `request`, if it asks for `address`.
    public static func reply(to request: ARP, from address: IPv4Address, mac: MACAddress) -> ARP? {
        guard !request.isReply, request.target == address else { return nil }
        return ARP(isReply: true, senderMAC: mac, sender: address, targetMAC: request.senderMAC, target: request.sender)
    }
}
