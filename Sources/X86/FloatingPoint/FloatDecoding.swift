/// Decoding of x87 (D8...DF, 9B), MMX, SSE, SSE2 and SSE3 (0F xx) instructions. Most become
/// `.hostFloat`: the traits (FloatTraits) in `sub`/`size2`, the memory operand's size in `size`,
/// the host re-encoding (HostEncoding) in `immediate`, the memory operand as usual.
extension InstructionDecoder {
    /// The mandatory prefix of an SSE instruction: F3 or F2 if present (the last wins), else 66.
    func mandatoryPrefix(_ instruction: Instruction) -> UInt8 {
        instruction.repeatPrefix != 0 ? instruction.repeatPrefix : (operandOverride ? 0x66 : 0)
    }

    /// A 0F xx opcode that the integer maps do not know.
    mutating func floatTwoByte(_ opcode: UInt8, _ instruction: inout Instruction) throws(X86Fault) {
        let prefix = mandatoryPrefix(instruction)
        instruction.repeatPrefix = 0
        if opcode == 0x77 {
            // emms: no ModRM
            guard prefix == 0 else { return instruction.op = .undefined }
            var encoding = HostEncoding()
            encoding.opcode = 0x77
            return place(encoding, FloatForm([.mmx, .waits]), &instruction)
        }
        guard
            (0x10...0x17).contains(opcode) || (0x28...0x2F).contains(opcode) || (0x50...0x7F).contains(opcode)
                || (0xC2...0xC6).contains(opcode) || opcode >= 0xD0
        else { return instruction.op = .unimplemented }
        let raw = try modrmKeepingByte(&instruction)
        if opcode == 0xC3 {
            // movnti: a plain store of a general register (the hint changes nothing visible).
            instruction.op = instruction.isRegister ? .undefined : .movRmReg
            instruction.size = rexW ? 8 : 4
            return
        }
        if opcode == 0xF7 {
            // maskmovq / maskmovdqu: a byte-masked store to [rdi], done by the executor itself.
            guard instruction.isRegister, prefix == 0 || prefix == 0x66 else { return instruction.op = .undefined }
            instruction.op = .maskMove
            instruction.sub = prefix == 0x66 ? 1 : 0
            return
        }
        guard
            let form = FloatOpcodeMap.twoByte(
                opcode, prefix: prefix, register: instruction.isRegister, digit: (raw >> 3) & 7, rexW: rexW)
        else { return instruction.op = .undefined }
        var encoding = HostEncoding()
        encoding.prefix = prefix
        encoding.rex = rex & (instruction.isRegister ? 0xD : 0xC)
        encoding.opcode = opcode
        encoding.modrm = raw
        encoding.memory = !instruction.isRegister
        if form.traits.contains(.immediate) { encoding.immediate = try window.byte() }
        place(encoding, form, &instruction)
    }

    /// 0F AE with a memory operand: fxsave, fxrstor, ldmxcsr, stmxcsr (the XSAVE family is not
    /// offered: CPUID has no XSAVE); clflush is a no-op.
    mutating func stateSaveGroup(_ instruction: inout Instruction) {
        switch instruction.reg & 7 {
        case 0: instruction.op = .fxsave
        case 1: instruction.op = .fxrstor
        case 2: instruction.op = .ldmxcsr
        case 3: instruction.op = .stmxcsr
        case 7: instruction.op = .nop
        default: instruction.op = .undefined
        }
        // fxsave64/fxrstor64 (REX.W) store 64-bit instruction and data pointers.
        instruction.size = rexW ? 8 : 4
    }

    /// D8...DF: the x87 escape opcodes.
    mutating func x87(_ escape: UInt8, _ instruction: inout Instruction) throws(X86Fault) {
        let raw = try modrmKeepingByte(&instruction)
        let environmentBytes: UInt8 = operand16 ? 14 : 28
        guard let form = FloatOpcodeMap.x87(escape, modrm: raw, environmentBytes: environmentBytes) else {
            return instruction.op = .undefined
        }
        var encoding = HostEncoding()
        // Only the operand-size prefix means anything to x87 (the 14-byte environment).
        encoding.prefix = operandOverride && !instruction.isRegister ? 0x66 : 0
        encoding.escape = escape
        encoding.modrm = raw
        encoding.memory = !instruction.isRegister
        place(encoding, form, &instruction)
    }

    /// Decodes the ModRM operand and returns the ModRM byte itself, which the host re-encoding
    /// (and x87's last-opcode register) keeps.
    private mutating func modrmKeepingByte(_ instruction: inout Instruction) throws(X86Fault) -> UInt8 {
        let byte = try window.byte()
        window.position -= 1
        try modrm(&instruction)
        return byte
    }

    private func place(_ encoding: HostEncoding, _ form: FloatForm, _ instruction: inout Instruction) {
        instruction.op = .hostFloat
        instruction.sub = UInt8(truncatingIfNeeded: form.traits.rawValue)
        instruction.size2 = UInt8(truncatingIfNeeded: form.traits.rawValue >> 8)
        instruction.size = form.memoryBytes
        instruction.immediate = encoding.packed
    }
}
