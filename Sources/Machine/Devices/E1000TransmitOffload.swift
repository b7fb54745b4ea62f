/// The 82540EM's transmit offloads, as its extended descriptors ask for them: a context
/// descriptor sets where the IP and TCP/UDP headers and their checksum fields are and the TCP
/// segmentation parameters; a data descriptor's POPTS asks for the IP (IXSM) and TCP/UDP (TXSM)
/// checksums of its packet, and TSE cuts the packet into MSS-sized TCP segments, each with the
/// headers copied and fixed up (IP total length and identification, TCP sequence number, FIN and
/// PSH on the last segment only). Linux's e1000 driver sends every TCP stream this way.
struct E1000TransmitContext {
    var ipChecksumStart = 0  // IPCSS
    var ipChecksumOffset = 0  // IPCSO
    var ipChecksumEnd = 0  // IPCSE (inclusive; 0: to the end)
    var transportChecksumStart = 0  // TUCSS
    var transportChecksumOffset = 0  // TUCSO
    var transportChecksumEnd = 0  // TUCSE (inclusive; 0: to the end)
    var isIPv4 = false  // TUCMD.IP
    var isTCP = false  // TUCMD.TCP
    var headerLength = 0  // HDRLEN
    var maximumSegmentSize = 0  // MSS

    /// Reads a context descriptor (DEXT with DTYP 0).
    init(descriptor bytes: UnsafeRawBufferPointer) {
        ipChecksumStart = Int(bytes[0])
        ipChecksumOffset = Int(bytes[1])
        ipChecksumEnd = Int(bytes[2]) | Int(bytes[3]) << 8
        transportChecksumStart = Int(bytes[4])
        transportChecksumOffset = Int(bytes[5])
        transportChecksumEnd = Int(bytes[6]) | Int(bytes[7]) << 8
        let command = bytes[11]
        isIPv4 = command & 0x02 != 0
        isTCP = command & 0x01 != 0
        headerLength = Int(bytes[13])
        maximumSegmentSize = Int(bytes[14]) | Int(bytes[15]) << 8
    }

    init() {}

    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    /// The frames to send for `packet`: itself with the checksums asked for, or (segmenting)
    /// one frame per MSS of payload.
    func frames(for packet: [UInt8], ipChecksum: Bool, transportChecksum: Bool, segment: Bool) throws(Problem)
        -> [[UInt8]]
    {
        guard segment else {
            var frame = packet
            try insertChecksums(&frame, ip: ipChecksum, transport: transportChecksum, addLength: false)
            return [frame]
        }
        guard headerLength > 0, headerLength < packet.count, maximumSegmentSize > 0 else {
            throw Problem(
                description:
                    "TCP segmentation of a \(packet.count)-byte packet with a \(headerLength)-byte header and MSS \(maximumSegmentSize)"
            )
        }
        guard transportChecksumStart + 14 <= headerLength, ipChecksumStart + 6 <= headerLength else {
            throw Problem(description: "TCP segmentation with headers outside the \(headerLength)-byte header")
        }
        let header = Array(packet[0..<headerLength])
        var frames: [[UInt8]] = []
        var offset = headerLength
        var index = 0
        while offset < packet.count {
            let end = min(offset + maximumSegmentSize, packet.count)
            var frame = header + packet[offset..<end]
            if isIPv4 {
                IPv4Packets.put16(
                    UInt16(truncatingIfNeeded: frame.count - ipChecksumStart), into: &frame, at: ipChecksumStart + 2)
                let identification = IPv4Packets.read16(frame, ipChecksumStart + 4) &+ UInt16(truncatingIfNeeded: index)
                IPv4Packets.put16(identification, into: &frame, at: ipChecksumStart + 4)
            }
            if isTCP {
                let sequence =
                    IPv4Packets.read32(frame, transportChecksumStart + 4) &+ UInt32(truncatingIfNeeded: offset - headerLength)
                IPv4Packets.put32(sequence, into: &frame, at: transportChecksumStart + 4)
                if end < packet.count { frame[transportChecksumStart + 13] &= ~0x09 }  // FIN and PSH: last only
            } else {
                // UDP: the length field covers this datagram.
                IPv4Packets.put16(
                    UInt16(truncatingIfNeeded: frame.count - transportChecksumStart), into: &frame, at: transportChecksumStart + 4
                )
            }
            try insertChecksums(&frame, ip: ipChecksum, transport: transportChecksum, addLength: true)
            frames.append(frame)
            offset = end
            index += 1
        }
        return frames
    }

    /// The IP header checksum over IPCSS...IPCSE at IPCSO; the TCP/UDP checksum over TUCSS to
    /// TUCSE (or the end) at TUCSO, the field holding the pseudo-header's sum the driver put
    /// there (without the length when segmenting: `addLength` adds each segment's).
    private func insertChecksums(_ frame: inout [UInt8], ip: Bool, transport: Bool, addLength: Bool) throws(Problem) {
        if ip {
            let end = ipChecksumEnd == 0 ? frame.count - 1 : ipChecksumEnd
            guard ipChecksumStart <= end, end < frame.count, ipChecksumOffset + 1 < frame.count else {
                throw Problem(description: "IP checksum offsets \(ipChecksumStart)...\(end) outside a \(frame.count)-byte frame")
            }
            IPv4Packets.put16(0, into: &frame, at: ipChecksumOffset)
            IPv4Packets.put16(IPv4Packets.checksum(frame[ipChecksumStart...end]), into: &frame, at: ipChecksumOffset)
        }
        if transport {
            let end = transportChecksumEnd == 0 ? frame.count - 1 : min(transportChecksumEnd, frame.count - 1)
            guard transportChecksumStart <= end, transportChecksumOffset + 1 < frame.count else {
                throw Problem(
                    description: "TCP/UDP checksum offsets \(transportChecksumStart)...\(end) outside a \(frame.count)-byte frame"
                )
            }
            let length = addLength ? UInt32(frame.count - transportChecksumStart) : 0
            var checksum = IPv4Packets.checksum(frame[transportChecksumStart...end], initial: length)
            if !isTCP && checksum == 0 { checksum = 0xFFFF }  // UDP sends a zero sum as all ones
            IPv4Packets.put16(checksum, into: &frame, at: transportChecksumOffset)
        }
    }
}

/// The Ethernet frame check sequence (CRC-32, IEEE 802.3), which the 82540EM leaves at the end
/// of a received frame unless RCTL.SECRC strips it.
enum EthernetFCS {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 != 0 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    static func of(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return ~crc
    }
}
