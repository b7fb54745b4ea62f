/// The 82540EM's serial EEPROM as its EECD register exposes it: a 64-word Microwire part
/// (93C46) that a driver bit-bangs. It asks for the EEPROM with EE_REQ and waits for EE_GNT,
/// selects it with CS, shifts in a READ opcode (110) and a 6-bit word address on DI, one bit per
/// rising edge of SK, then clocks the word out on DO, most significant bit first. Linux's e1000
/// driver reads the MAC address and checks the checksum this way; EERD reads the same words.
struct MicrowireEEPROM {
    enum Bit {
        static let clock: UInt32 = 1 << 0  // SK
        static let chipSelect: UInt32 = 1 << 1  // CS
        static let dataIn: UInt32 = 1 << 2  // DI
        static let dataOut: UInt32 = 1 << 3  // DO
        static let request: UInt32 = 1 << 6  // EE_REQ
        static let grant: UInt32 = 1 << 7  // EE_GNT
        static let present: UInt32 = 1 << 8  // EE_PRES
        /// What the driver may set: SK, CS, DI, the write-enable field and EE_REQ.
        static let writable: UInt32 = clock | chipSelect | dataIn | 0x30 | request
    }

    static let readOpcode: UInt32 = 0b110
    static let addressBits = 6

    let words: [UInt16]
    private(set) var eecd: UInt32 = Bit.present
    private var shiftedIn: UInt32 = 0
    private var bitsIn = 0
    /// The word being clocked out and how many of its bits have gone.
    private var reading: (word: UInt16, address: Int, bitsOut: Int)?

    /// - Parameter words: the EEPROM's contents (64 words; a shorter list reads as all ones).
    init(words: [UInt16]) { self.words = words.isEmpty ? [0xFFFF] : words }

    /// The driver writes EECD: returns nothing; `eecd` is what it reads back.
    mutating func write(_ value: UInt32) {
        let risingClock = value & Bit.clock != 0 && eecd & Bit.clock == 0
        var next = value & Bit.writable | Bit.present
        if next & Bit.request != 0 { next |= Bit.grant }  // nothing else shares the EEPROM
        next |= eecd & Bit.dataOut
        if next & Bit.chipSelect == 0 {
            // Deselected: the next selection starts a new command; DO idles high (ready).
            shiftedIn = 0
            bitsIn = 0
            reading = nil
            next |= Bit.dataOut
        } else if risingClock {
            if var current = reading {
                if current.bitsOut == 16 {
                    // Sequential read: the next word follows.
                    current.address = (current.address + 1) % words.count
                    current.word = words[current.address]
                    current.bitsOut = 0
                }
                let bit = (current.word >> (15 - current.bitsOut)) & 1
                current.bitsOut += 1
                reading = current
                next = bit != 0 ? next | Bit.dataOut : next & ~Bit.dataOut
            } else {
                shiftedIn = shiftedIn << 1 | (value & Bit.dataIn != 0 ? 1 : 0)
                bitsIn += 1
                // A start bit of 1 precedes the opcode on the part; drivers send it as the
                // opcode's leading 1, so the command is complete after 3 + 6 bits.
                if bitsIn == 3 + Self.addressBits {
                    let opcode = shiftedIn >> UInt32(Self.addressBits)
                    let address = Int(shiftedIn & 0x3F)
                    if opcode == Self.readOpcode {
                        reading = (words[address % words.count], address % words.count, 0)
                        next &= ~Bit.dataOut  // the dummy zero before the data
                    }
                }
            }
        }
        eecd = next
    }
}

/// The 82540EM's PHY (a Marvell 88E1011-compatible one at address 1) as MDIC reaches it: the
/// registers Linux's e1000 driver reads and writes to find the PHY, reset it, advertise and
/// start auto-negotiation and learn the link's speed and duplex. The link is always up at
/// 1000 Mb/s full duplex, auto-negotiation completes at once.
struct E1000PHY {
    enum MDIC {
        static let dataMask: UInt32 = 0xFFFF
        static let write: UInt32 = 1 << 26
        static let read: UInt32 = 2 << 26
        static let ready: UInt32 = 1 << 28
        static let error: UInt32 = 1 << 30
    }

    static let address: UInt32 = 1
    static let identifier: (UInt16, UInt16) = (0x0141, 0x0C20)  // Marvell 88E1011

    private var registers = [UInt16](repeating: 0, count: 32)

    init() { reset() }

    mutating func reset() {
        registers = [UInt16](repeating: 0, count: 32)
        registers[0] = 0x1140  // control: auto-negotiation on, full duplex, 1000 Mb/s
        registers[1] = 0x796D  // status: link up, auto-negotiation complete, 10/100/1000 abilities
        registers[2] = Self.identifier.0
        registers[3] = Self.identifier.1
        registers[4] = 0x0DE1  // advertisement: 10/100 half and full, pause
        registers[5] = 0x45E1  // link partner: the same, acknowledged
        registers[6] = 0x000F  // auto-negotiation expansion
        registers[9] = 0x0300  // 1000BASE-T control: advertise half and full
        registers[10] = 0x3C00  // 1000BASE-T status: partner 1000 full, receivers OK
        registers[15] = 0x3000  // extended status: 1000BASE-T half and full
        registers[16] = 0x0068  // 88E1011 PHY specific control
        registers[17] = 0xAC00  // specific status: 1000 Mb/s, full duplex, resolved, link up
    }

    /// Carries out the MDIC command `value` and returns what MDIC reads afterwards.
    mutating func access(_ value: UInt32) -> UInt32 {
        let register = Int((value >> 16) & 0x1F)
        let phy = (value >> 21) & 0x1F
        let operation = value & (3 << 26)
        guard phy == Self.address, operation == MDIC.read || operation == MDIC.write else {
            return value | MDIC.ready | MDIC.error
        }
        if operation == MDIC.write {
            write(register, UInt16(value & MDIC.dataMask))
            return value | MDIC.ready
        }
        return value & ~MDIC.dataMask | UInt32(registers[register]) | MDIC.ready
    }

    private mutating func write(_ register: Int, _ value: UInt16) {
        switch register {
        case 0:
            if value & 0x8000 != 0 {  // reset: self-clearing, the link comes back at once
                reset()
                return
            }
            registers[0] = value & ~0x0200  // restarting auto-negotiation completes it at once
        case 1, 2, 3, 5, 6, 10, 15, 17: break  // read-only
        default: registers[register] = value
        }
    }
}
