import Foundation
import Testing

@testable import Machine

/// What Linux's e1000 driver does to the 82540EM before it sends a frame: reads the EEPROM bit
/// by bit through EECD, finds and sets up the PHY through MDIC, and sends TCP streams as
/// segmentation requests with checksum offload.
@Suite struct E1000ManagementTests {
    typealias Bit = MicrowireEEPROM.Bit

    /// Linux's Microwire sequence (e1000_acquire_eeprom, e1000_shift_out_ee_bits,
    /// e1000_shift_in_ee_bits, e1000_standby_eeprom) reads back the words, one command each.
    @Test func microwireReadsTheWordsLinuxAsksFor() {
        let words = (0..<64).map { UInt16(truncatingIfNeeded: $0 &* 0x0101 ^ 0xA55A) }
        var eeprom = MicrowireEEPROM(words: words)
        #expect(eeprom.eecd & Bit.present != 0)
        var eecd = eeprom.eecd | Bit.request
        eeprom.write(eecd)
        #expect(eeprom.eecd & Bit.grant != 0, "granted at once: nothing else shares it")
        eecd = eeprom.eecd & ~(Bit.dataIn | Bit.clock)
        eeprom.write(eecd)
        eecd |= Bit.chipSelect
        eeprom.write(eecd)
        func pulse() {
            eeprom.write(eecd | Bit.clock)
            eeprom.write(eecd)
        }
        func shiftOut(_ value: UInt32, _ count: Int) {
            for bit in (0..<count).reversed() {
                eecd = value >> UInt32(bit) & 1 != 0 ? eecd | Bit.dataIn : eecd & ~Bit.dataIn
                eeprom.write(eecd)
                pulse()
            }
            eecd &= ~Bit.dataIn
            eeprom.write(eecd)
        }
        func shiftIn() -> UInt16 {
            var word: UInt16 = 0
            for _ in 0..<16 {
                eeprom.write(eecd | Bit.clock)
                word = word << 1 | (eeprom.eecd & Bit.dataOut != 0 ? 1 : 0)
                eeprom.write(eecd)
            }
            return word
        }
        func standby() {
            eecd &= ~(Bit.chipSelect | Bit.clock)
            eeprom.write(eecd)
            eecd |= Bit.clock
            eeprom.write(eecd)
            eecd |= Bit.chipSelect
            eeprom.write(eecd)
            eecd &= ~Bit.clock
            eeprom.write(eecd)
        }
        for address in [0, 1, 2, 0x3F, 17] {
            shiftOut(MicrowireEEPROM.readOpcode, 3)
            shiftOut(UInt32(address), 6)
            #expect(shiftIn() == words[address], "word \(address)")
            standby()
        }
        eeprom.write(0)
        #expect(eeprom.eecd & Bit.dataOut != 0 && eeprom.eecd & Bit.grant == 0, "released: DO idles high")
    }

    @Test func mdicReachesTheMarvellPHYAtAddressOne() {
        var phy = E1000PHY()
        func command(_ operation: UInt32, register: UInt32, phy address: UInt32 = 1, data: UInt32 = 0) -> UInt32 {
            operation | address << 21 | register << 16 | data
        }
        let identifier = (
            phy.access(command(E1000PHY.MDIC.read, register: 2)), phy.access(command(E1000PHY.MDIC.read, register: 3))
        )
        #expect(identifier.0 & 0xFFFF == 0x0141 && identifier.1 & 0xFFF0 == 0x0C20, "an 88E1011: what Linux accepts for an 82540")
        #expect(identifier.0 & E1000PHY.MDIC.ready != 0 && identifier.0 & E1000PHY.MDIC.error == 0)
        #expect(phy.access(command(E1000PHY.MDIC.read, register: 2, phy: 2)) & E1000PHY.MDIC.error != 0, "no PHY at 2")
        let status = phy.access(command(E1000PHY.MDIC.read, register: 1)) & 0xFFFF
        #expect(status & 0x0024 == 0x0024, "link up, auto-negotiation complete")
        _ = phy.access(command(E1000PHY.MDIC.write, register: 4, data: 0x0C01))
        #expect(phy.access(command(E1000PHY.MDIC.read, register: 4)) & 0xFFFF == 0x0C01)
        _ = phy.access(command(E1000PHY.MDIC.write, register: 0, data: 0x1340))  // restart auto-negotiation
        #expect(phy.access(command(E1000PHY.MDIC.read, register: 0)) & 0x0200 == 0, "restart completes at once")
        _ = phy.access(command(E1000PHY.MDIC.write, register: 0, data: 0x8000))  // reset
        #expect(phy.access(command(E1000PHY.MDIC.read, register: 4)) & 0xFFFF == 0x0DE1, "reset restores the advertisement")
        #expect(phy.access(command(E1000PHY.MDIC.write, register: 2, data: 0xDEAD)) & E1000PHY.MDIC.ready != 0)
        #expect(phy.access(command(E1000PHY.MDIC.read, register: 2)) & 0xFFFF == 0x0141, "the identifier is read-only")
    }

    /// A 3000-byte TCP payload with Linux's TSO context (the TCP checksum field holding the
    /// pseudo-header sum without a length, the IP length and checksum zero) becomes three
    /// frames with valid IP and TCP checksums, consecutive sequence numbers and identifications,
    /// and FIN and PSH on the last only.
    @Test func segmentationCutsATCPStreamIntoValidFrames() throws {
        let source: [UInt8] = [10, 77, 0, 2]
        let destination: [UInt8] = [10, 77, 0, 1]
        var packet = [UInt8](repeating: 0, count: 54 + 3000)
        packet[12] = 0x08  // IPv4
        packet[14] = 0x45
        packet[18] = 0x12
        packet[19] = 0x34  // identification 0x1234
        packet[22] = 64
        packet[23] = 6  // TCP
        packet.replaceSubrange(26..<30, with: source)
        packet.replaceSubrange(30..<34, with: destination)
        packet[38] = 0x01  // sequence number 0x01000000
        packet[46] = 0x50  // data offset: 20 bytes
        packet[47] = 0x19  // FIN | PSH | ACK
        for index in 54..<packet.count { packet[index] = UInt8(truncatingIfNeeded: index &* 7) }
        // The pseudo-header's sum without the TCP length, folded, as Linux's e1000_tso leaves it.
        let words = [0x0A4D, 0x0002, 0x0A4D, 0x0001, 6]
        var pseudo = UInt32(words.reduce(0, +))
        while pseudo > 0xFFFF { pseudo = (pseudo & 0xFFFF) + (pseudo >> 16) }
        packet[50] = UInt8(pseudo >> 8)
        packet[51] = UInt8(pseudo & 0xFF)
        var context = E1000TransmitContext()
        (context.ipChecksumStart, context.ipChecksumOffset, context.ipChecksumEnd) = (14, 24, 33)
        (context.transportChecksumStart, context.transportChecksumOffset, context.transportChecksumEnd) = (34, 50, 0)
        (context.isIPv4, context.isTCP, context.headerLength, context.maximumSegmentSize) = (true, true, 54, 1448)
        let frames = try context.frames(for: packet, ipChecksum: true, transportChecksum: true, segment: true)
        #expect(frames.map(\.count) == [54 + 1448, 54 + 1448, 54 + 104])
        for (index, frame) in frames.enumerated() {
            #expect(Int(IPv4Packets.read16(frame, 16)) == frame.count - 14, "IP total length")
            #expect(IPv4Packets.read16(frame, 18) == 0x1234 + UInt16(index), "identification")
            #expect(IPv4Packets.checksum(frame[14..<34]) == 0, "IP header checksum")
            #expect(IPv4Packets.read32(frame, 38) == 0x0100_0000 + UInt32(index * 1448), "sequence number")
            #expect(frame[47] == (index == 2 ? 0x19 : 0x10), "FIN and PSH on the last segment only")
            let tcpLength = UInt32(frame.count - 34)
            let pseudoHeader = UInt32(words.reduce(0, +)) + tcpLength
            #expect(IPv4Packets.checksum(frame[34...], initial: pseudoHeader) == 0, "TCP checksum of segment \(index)")
            #expect(Array(frame[54...]) == Array(packet[(54 + index * 1448)..<(54 + index * 1448 + frame.count - 54)]))
        }
        #expect(throws: E1000TransmitContext.Problem.self) {
            var broken = context
            broken.headerLength = 0
            _ = try broken.frames(for: packet, ipChecksum: true, transportChecksum: true, segment: true)
        }
    }
}
