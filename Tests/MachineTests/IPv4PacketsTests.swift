import Testing

@testable import Machine

/// Frames for the TAP backend: IPv4/UDP built with valid checksums and parsed only when every
/// length and checksum holds; ARP requests and replies; dotted-quad addresses.
@Suite struct IPv4PacketsTests {
    let guestMAC: MACAddress = [0x02, 0x68, 0x76, 0x62, 0x00, 0x02]
    let hostMAC: MACAddress = [0x02, 0x68, 0x76, 0x62, 0x00, 0x01]

    func datagram(_ payload: [UInt8]) -> IPv4Packets.Datagram {
        IPv4Packets.Datagram(
            sourceMAC: guestMAC, destinationMAC: hostMAC, source: IPv4Address("10.77.0.2")!,
            destination: IPv4Address("10.77.0.1")!, sourcePort: 40000, destinationPort: 9000, payload: payload)
    }

    @Test func addressesParseAndPrint() {
        #expect(IPv4Address("10.77.0.2")?.value == 0x0A4D_0002)
        #expect(IPv4Address(0xC0A8_0101).description == "192.168.1.1")
        for bad in ["", "10.0.0", "10.0.0.256", "10.0.0.1.2", "a.b.c.d", "10..0.1", "+1.0.0.1", "1.0.0.0001"] {
            #expect(IPv4Address(bad) == nil, "\(bad)")
        }
    }

    /// RFC 1071's worked example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2, so the checksum is its complement.
    @Test func theInternetChecksumIsRFC1071s() {
        #expect(IPv4Packets.checksum([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]) == ~UInt16(0xDDF2))
        #expect(IPv4Packets.checksum([0xFF]) == ~UInt16(0xFF00), "an odd byte is the high half of a last word")
    }

    @Test func aUDPFrameRoundTripsWithValidChecksums() throws {
        for length in [0, 1, 18, 1472] {
            let sent = datagram((0..<length).map { UInt8(truncatingIfNeeded: $0 * 13) })
            let frame = IPv4Packets.frame(sent, identification: 7)
            #expect(frame.count == IPv4Packets.udpOverhead + length)
            #expect(IPv4Packets.checksum(frame[14..<34]) == 0, "the header checksum verifies")
            #expect(try IPv4Packets.parseUDP(frame).get() == sent)
        }
    }

    @Test func everyDamagedFrameIsRejectedWithTheReason() {
        let frame = IPv4Packets.frame(datagram(Array(repeating: 0xAB, count: 32)))
        func reason(_ change: (inout [UInt8]) -> Void) -> String {
            var copy = frame
            change(&copy)
            if case .failure(let failure) = IPv4Packets.parseUDP(copy) { return failure.description }
            return "accepted"
        }
        #expect(reason { $0 = Array($0.prefix(30)) }.contains("runt"))
        #expect(reason { $0[12] = 0x86 }.contains("not IPv4"))
        #expect(reason { $0[14] = 0x46 }.contains("options"))
        #expect(reason { $0[17] &+= 40 }.contains("does not fit"))
        #expect(reason { $0[20] = 0x20 }.contains("fragment"))
        #expect(reason { $0[23] = 6 }.contains("not UDP"))
        #expect(reason { $0[22] &+= 1 }.contains("header checksum"))
        #expect(reason { $0[50] ^= 1 }.contains("UDP checksum"))
        #expect(reason { $0[39] &-= 1 }.contains("UDP length"))
        var unchecked = frame
        unchecked[40] = 0
        unchecked[41] = 0
        unchecked[50] ^= 1
        #expect((try? IPv4Packets.parseUDP(unchecked).get()) != nil, "a zero UDP checksum means none")
    }

    @Test func arpRequestsGetTheirReply() throws {
        let request = IPv4Packets.ARP(
            isReply: false, senderMAC: hostMAC, sender: IPv4Address("10.77.0.1")!, targetMAC: [0, 0, 0, 0, 0, 0],
            target: IPv4Address("10.77.0.2")!)
        let frame = IPv4Packets.frame(request)
        #expect(frame.count == 60 && Array(frame[0..<6]) == IPv4Packets.broadcastMAC)
        let parsed = try #require(IPv4Packets.parseARP(frame))
        #expect(parsed == request)
        let reply = try #require(IPv4Packets.reply(to: parsed, from: IPv4Address("10.77.0.2")!, mac: guestMAC))
        #expect(reply.isReply && reply.target == request.sender && reply.targetMAC == hostMAC && reply.senderMAC == guestMAC)
        #expect(IPv4Packets.parseARP(IPv4Packets.frame(reply)) == reply)
        #expect(IPv4Packets.reply(to: parsed, from: IPv4Address("10.77.0.3")!, mac: guestMAC) == nil, "not ours to answer")
        #expect(IPv4Packets.parseARP(Array(frame.prefix(41))) == nil)
    }
}
