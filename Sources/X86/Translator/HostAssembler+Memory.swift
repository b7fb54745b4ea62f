/// Guest memory from translated code: the software TLB's fast path inline, with flag-free host
/// instructions only (BMI2 shifts, lea, not, jrcxz), so the guest's flags stay in RFLAGS.
///
/// The TLB is the interpreter's (`TLBEntry`: read tag, write tag, physical offset; 24 bytes, 256
/// entries). An access hits when the entry of its first byte's page carries the tag of its last
/// byte's page: that is the first byte's own page (never true when the access crosses a page,
/// since consecutive pages index different entries). A write checks the write tag, which the
/// interpreter sets only for writable, dirty pages that hold no decoded code: stores to code
/// (self-modifying code), to MMIO and to pages not yet written all miss. A miss leaves the block
/// before the instruction, and the interpreter runs it with its usual semantics.
extension HostAssembler {
    /// Where `TLBEntry`'s fields lie (the index arithmetic below assumes 24-byte entries and
    /// a 256-entry table; `TranslationCache` checks both).
    static let readTagOffset = UInt8(MemoryLayout<TLBEntry>.offset(of: \.readTag)!)
    static let writeTagOffset = UInt8(MemoryLayout<TLBEntry>.offset(of: \.writeTag)!)
    static let physicalOffsetOffset = UInt8(MemoryLayout<TLBEntry>.offset(of: \.physicalOffset)!)

    /// A VEX-encoded BMI2 shift (`shrx` with prefix F2, `shlx` with 66): destination =
    /// source shifted by `count`, flags untouched.
    mutating func bmi2Shift(left: Bool, _ destination: Register, _ source: Register, count: Register) {
        let d = destination.rawValue
        let s = source.rawValue
        let c = count.rawValue
        let first: UInt8 = (d & 8 == 0 ? 0x80 : 0) | 0x40 | (s & 8 == 0 ? 0x20 : 0) | 0x02
        let second: UInt8 = 0x80 | ((~c & 15) << 3) | (left ? 0x01 : 0x03)
        emit(0xC4, first, second, 0xF7, 0xC0 | (d & 7) << 3 | (s & 7))
    }

    /// `lea destination, [base + displacement]` (32-bit displacement).
    mutating func loadAddress(_ destination: Register, base: Register, displacement: Int32) {
        let rex: UInt8 = 0x48 | (destination.rawValue & 8 != 0 ? 4 : 0) | (base.rawValue & 8 != 0 ? 1 : 0)
        emit(rex, 0x8D, 0x80 | (destination.rawValue & 7) << 3 | (base.rawValue & 7))
        if base.rawValue & 7 == 4 { bytes.append(0x24) }  // rsp/r12 as base need a SIB
        littleEndian(UInt64(UInt32(bitPattern: displacement)), count: 4)
    }

    /// `mov destination, [base + displacement8]` (8 bytes).
    mutating func loadWord(_ destination: Register, base: Register, displacement: UInt8) {
        let rex: UInt8 = 0x48 | (destination.rawValue & 8 != 0 ? 4 : 0) | (base.rawValue & 8 != 0 ? 1 : 0)
        emit(rex, 0x8B, 0x40 | (destination.rawValue & 7) << 3 | (base.rawValue & 7), displacement)
    }

    /// `not register` (flags untouched).
    mutating func complement(_ register: Register) {
        registerForm(size: 8, opcode: Opcode(0xF7), reg: 2, rm: register)
    }

    /// Checks that the `size`-byte access at the guest linear address in r11 hits the TLB for
    /// reading or writing with the block's privilege; on a hit r11 becomes the guest physical
    /// address (the access is then at [r10 + r11]). Returns the rel32 field of the miss jump.
    mutating func checkTLB(write: Bool, size: UInt8, user: Bool) -> Int {
        usesGuestMemory = true
        loadShiftCount(12)
        bmi2Shift(left: false, .r9, .r11, count: .rcx)  // r9 = linear >> 12
        emit(0x45, 0x0F, 0xB6, 0xC9)  // movzx r9d, r9b: the entry index
        loadAddress(.r9, base: .r9, index: .r9, scale: 1, displacement: 0)  // index * 3
        loadAddress(.r9, base: .r8, index: .r9, scale: 3, displacement: 0)  // the entry
        loadAddress(.r13, base: .r11, displacement: Int32(size) - 1)  // the last byte
        bmi2Shift(left: false, .r13, .r13, count: .rcx)
        bmi2Shift(left: true, .r13, .r13, count: .rcx)  // its page
        complement(.r13)
        loadWord(.rcx, base: .r9, displacement: write ? Self.writeTagOffset : Self.readTagOffset)
        // rcx = tag - (page | user) = tag + ~page + (user ? 0 : 1)
        loadAddress(.rcx, base: .rcx, index: .r13, scale: 0, displacement: user ? 0 : 1)
        let miss = jumpUnlessRCXZero()
        loadWord(.rcx, base: .r9, displacement: Self.physicalOffsetOffset)
        loadAddress(.r11, base: .r11, index: .rcx, scale: 0, displacement: 0)
        return miss
    }

    /// Operand-size prefix, REX and ModRM/SIB for `reg` with the memory operand [r10 + r11].
    private mutating func guestMemoryForm(size: UInt8, opcode: Opcode, reg: Register) {
        if size == 2 { bytes.append(0x66) }
        var rex: UInt8 = 0x43  // X (r11 as index), B (r10 as base)
        if size == 8 { rex |= 0x08 }
        if reg.rawValue & 8 != 0 { rex |= 0x04 }
        bytes.append(rex)
        emit(opcode)
        emit(0x04 | (reg.rawValue & 7) << 3, 0x1A)  // SIB: index r11, base r10, scale 1
    }

    /// `register = [r10 + r11]` of `size` bytes, zero-extended.
    mutating func loadGuestMemory(_ register: Register, size: UInt8) {
        switch size {
        case 1: guestMemoryForm(size: 4, opcode: Opcode(0x0F, 0xB6), reg: register)
        case 2: guestMemoryForm(size: 4, opcode: Opcode(0x0F, 0xB7), reg: register)
        case 4: guestMemoryForm(size: 4, opcode: Opcode(0x8B), reg: register)
        default: guestMemoryForm(size: 8, opcode: Opcode(0x8B), reg: register)
        }
    }

    /// `[r10 + r11] = register` of `size` bytes (al/dl for bytes: no REX.R needed).
    mutating func storeGuestMemory(_ register: Register, size: UInt8) {
        guestMemoryForm(size: size, opcode: Opcode(size == 1 ? 0x88 : 0x89), reg: register)
    }
}
