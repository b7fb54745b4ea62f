/// The state of decoding one instruction once its prefixes are read: the byte window, the REX
/// bits and operand sizes they set, and whether the memory operand is RIP-relative. The opcode
/// maps (X86OneByteMap.swift, X86TwoByteMap.swift) are its methods: plain switches, split into
/// ranges of opcodes, the rarer ranges kept out of line (`@inline(never)`) so `decode(at:)`
/// stays small.
struct InstructionDecoder {
    var window: FetchWindow
    let rip: UInt64
    let longMode: Bool
    let rex: UInt8
    let operandOverride: Bool
    /// 16-bit code (real mode): operands and addresses default to 16 bits, prefixes select 32.
    let sixteenBitCode: Bool
    /// The memory operand uses 16-bit addressing (BX/BP + SI/DI + displacement).
    let addressSize16: Bool
    var ripRelative = false

    /// The operand size is 16 bits (without REX.W).
    var operand16: Bool { operandOverride != sixteenBitCode }
    /// Near branches take a 16-bit displacement in 16-bit code (IP wraps at 64 KiB).
    var nearDisplacementSize: Int { !longMode && operand16 ? 2 : 4 }

    var rexW: Bool { rex & 8 != 0 }
    var rexR: UInt8 { rex & 4 != 0 ? 8 : 0 }
    var rexX: UInt8 { rex & 2 != 0 ? 8 : 0 }
    var rexB: UInt8 { rex & 1 != 0 ? 8 : 0 }
    /// Near branches and stack operations default to 64-bit in long mode.
    var stackSize: UInt8 { longMode ? (operandOverride ? 2 : 8) : (operand16 ? 2 : 4) }

    mutating func modrm(_ instruction: inout Instruction) throws(X86Fault) {
        let byte = try window.byte()
        let mode = byte >> 6
        instruction.reg = ((byte >> 3) & 7) | rexR
        let rmField = byte & 7
        if mode == 3 {
            instruction.isRegister = true
            instruction.rm = rmField | rexB
            return
        }
        if addressSize16 { return try modrm16(&instruction, mode: mode, rmField: rmField) }
        var base: UInt8 = 0xFF
        var displacementSize = mode == 1 ? 1 : (mode == 2 ? 4 : 0)
        if rmField == 4 {
            let sib = try window.byte()
            instruction.scale = sib >> 6
            let index = ((sib >> 3) & 7) | rexX
            instruction.index = index == 4 ? 0xFF : index
            if sib & 7 == 5 && mode == 0 {
                displacementSize = 4
            } else {
                base = (sib & 7) | rexB
            }
        } else if rmField == 5 && mode == 0 {
            displacementSize = 4
            ripRelative = longMode
        } else {
            base = rmField | rexB
        }
        instruction.rm = base
        if displacementSize > 0 { instruction.displacement = try window.signed(displacementSize) }
        if !longMode && instruction.segment == 0xFF {
            instruction.segment = base != 0xFF && (base & 7 == 4 || base & 7 == 5) ? 2 : 3
        }
    }

    /// The 16-bit forms: [BX+SI], [BX+DI], [BP+SI], [BP+DI], [SI], [DI], [BP] (disp16 alone
    /// when mod is 0), [BX], plus a disp8 or disp16; BP-based forms default to SS.
    private mutating func modrm16(_ instruction: inout Instruction, mode: UInt8, rmField: UInt8) throws(X86Fault) {
        let bx: UInt8 = 3, bp: UInt8 = 5, si: UInt8 = 6, di: UInt8 = 7
        let forms: [(UInt8, UInt8)] = [(bx, si), (bx, di), (bp, si), (bp, di), (si, 0xFF), (di, 0xFF), (bp, 0xFF), (bx, 0xFF)]
        var (base, index) = forms[Int(rmField)]
        var displacementSize = mode == 1 ? 1 : (mode == 2 ? 2 : 0)
        if mode == 0 && rmField == 6 {
            base = 0xFF
            displacementSize = 2
        }
        instruction.rm = base
        instruction.index = index
        instruction.scale = 0
        if displacementSize > 0 { instruction.displacement = try window.signed(displacementSize) }
        if instruction.segment == 0xFF { instruction.segment = base == bp ? 2 : 3 }
    }

    mutating func immediateOfOperandSize(_ instruction: inout Instruction) throws(X86Fault) {
        instruction.immediate = try window.signed(instruction.size == 2 ? 2 : 4) & X86CPU.mask(size: instruction.size)
    }

    /// Without REX, byte registers 4...7 are AH, CH, DH, BH (encoded 16...19).
    func byteRegisters(_ instruction: inout Instruction, reg: Bool, rm: Bool, byteSource: Bool = false) {
        guard rex == 0, instruction.size == 1 || byteSource else { return }
        if reg && (4...7).contains(instruction.reg) { instruction.reg += 12 }
        if rm && instruction.isRegister && (4...7).contains(instruction.rm) { instruction.rm += 12 }
    }

    /// Reads a relative displacement of `size` bytes (the last bytes of a near branch) and
    /// returns the target: relative to the end of the instruction. One method does both, so the
    /// end is read after the displacement, whatever order the caller's expressions evaluate in.
    mutating func branchTarget(displacementSize size: Int) throws(X86Fault) -> UInt64 {
        let relative = try window.signed(size)
        let target = rip &+ UInt64(window.position) &+ relative
        return longMode ? target : target & 0xFFFF_FFFF
    }
}
