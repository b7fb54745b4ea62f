/// The one-byte opcode map.
extension InstructionDecoder {
    mutating func oneByte(_ opcode: UInt8, _ instruction: inout Instruction) throws(X86Fault) {
        switch opcode {
        case 0x00...0x3F where opcode & 7 <= 5:  // (segment prefixes 26/2E/36/3E have opcode & 7 == 6)
            instruction.sub = opcode >> 3
            let form = opcode & 7
            if form & 1 == 0 { instruction.size = 1 }
            switch form {
            case 0, 1:
                instruction.op = .aluRmReg
                try modrm(&instruction)
            case 2, 3:
                instruction.op = .aluRegRm
                try modrm(&instruction)
            default:
                instruction.op = .aluRmImm
                instruction.isRegister = true
                instruction.rm = 0
                if instruction.size == 1 {
                    instruction.immediate = UInt64(try window.byte())
                } else {
                    try immediateOfOperandSize(&instruction)
                }
            }
            byteRegisters(&instruction, reg: true, rm: true)
        case 0x40...0x4F:  // inc/dec r32 (32-bit mode; REX in long mode is consumed above)
            instruction.op = opcode < 0x48 ? .incRm : .decRm
            instruction.isRegister = true
            instruction.rm = opcode & 7
        case 0x50...0x57:
            instruction.op = .pushReg
            instruction.reg = (opcode & 7) | rexB
            instruction.size = stackSize
        case 0x58...0x5F:
            instruction.op = .popReg
            instruction.reg = (opcode & 7) | rexB
            instruction.size = stackSize
        case 0x63 where longMode:
            instruction.op = .movsx
            instruction.size2 = 4
            try modrm(&instruction)
        case 0x68:
            instruction.op = .pushImm
            instruction.immediate = try window.signed(operand16 ? 2 : 4)
            instruction.size = stackSize
        case 0x6A:
            instruction.op = .pushImm
            instruction.immediate = try window.signed(1)
            instruction.size = stackSize
        case 0x69, 0x6B:
            instruction.op = .imulRegRmImm
            try modrm(&instruction)
            instruction.immediate = opcode == 0x6B ? try window.signed(1) : try window.signed(instruction.size == 2 ? 2 : 4)
        case 0x6C, 0x6D:
            instruction.op = .ins
            instruction.size = opcode == 0x6C ? 1 : (operand16 ? 2 : 4)
        case 0x6E, 0x6F:
            instruction.op = .outs
            instruction.size = opcode == 0x6E ? 1 : (operand16 ? 2 : 4)
        case 0x70...0x7F:
            instruction.op = .jcc
            instruction.sub = opcode & 0xF
            instruction.immediate = try branchTarget(displacementSize: 1)
        case 0x80, 0x81, 0x83:
            instruction.op = .aluRmImm
            if opcode == 0x80 { instruction.size = 1 }
            try modrm(&instruction)
            instruction.sub = instruction.reg & 7
            if opcode == 0x81 {
                try immediateOfOperandSize(&instruction)
            } else {
                instruction.immediate = try window.signed(1) & X86CPU.mask(size: instruction.size)
            }
            byteRegisters(&instruction, reg: false, rm: true)
        case 0x84, 0x85:
            instruction.op = .testRmReg
            if opcode == 0x84 { instruction.size = 1 }
            try modrm(&instruction)
            byteRegisters(&instruction, reg: true, rm: true)
        case 0x86, 0x87:
            instruction.op = .xchgRmReg
            if opcode == 0x86 { instruction.size = 1 }
            try modrm(&instruction)
            byteRegisters(&instruction, reg: true, rm: true)
        case 0x88...0x8B:
            instruction.op = opcode < 0x8A ? .movRmReg : .movRegRm
            if opcode & 1 == 0 { instruction.size = 1 }
            try modrm(&instruction)
            byteRegisters(&instruction, reg: true, rm: true)
        case 0x8C:
            instruction.op = .movFromSreg
            try modrm(&instruction)
            if !instruction.isRegister { instruction.size = 2 }
        case 0x8D:
            instruction.op = .lea
            try modrm(&instruction)
            if instruction.isRegister { instruction.op = .undefined }
        case 0x8E:
            instruction.op = .movToSreg
            instruction.size = 2
            try modrm(&instruction)
        default:
            try oneByteMiddle(opcode, &instruction)
        }
    }

    @inline(never)
    mutating func oneByteMiddle(_ opcode: UInt8, _ instruction: inout Instruction) throws(X86Fault) {
        switch opcode {
        case 0x8F:
            instruction.op = .popRm
            try modrm(&instruction)
            instruction.size = stackSize
        case 0x90 where rexB == 0:
            instruction.op = instruction.repeatPrefix == 0xF3 ? .pause : .nop
        case 0x90...0x97:
            instruction.op = .xchgRmReg
            instruction.isRegister = true
            instruction.rm = 0
            instruction.reg = (opcode & 7) | rexB
        case 0x98: instruction.op = .convertA
        case 0x99: instruction.op = .convertD
        case 0x9C:
            instruction.op = .pushf
            instruction.size = stackSize
        case 0x9D:
            instruction.op = .popf
            instruction.size = stackSize
        case 0x9E: instruction.op = .sahf
        case 0x9F: instruction.op = .lahf
        case 0xA0...0xA3:
            // mov between the accumulator and an absolute address (moffs).
            instruction.op = opcode < 0xA2 ? .movRegRm : .movRmReg
            if opcode & 1 == 0 { instruction.size = 1 }
            instruction.reg = 0
            instruction.displacement = try window.immediate(Int(instruction.addressSize))
            if !longMode && instruction.segment == 0xFF { instruction.segment = 3 }
        case 0xA4...0xA7, 0xAA...0xAF:
            switch opcode & 0xFE {
            case 0xA4: instruction.op = .movs
            case 0xA6: instruction.op = .cmps
            case 0xAA: instruction.op = .stos
            case 0xAC: instruction.op = .lods
            default: instruction.op = .scas
            }
            if opcode & 1 == 0 { instruction.size = 1 }
        case 0xA8, 0xA9:
            instruction.op = .testRmImm
            instruction.isRegister = true
            instruction.rm = 0
            if opcode == 0xA8 {
                instruction.size = 1
                instruction.immediate = UInt64(try window.byte())
            } else {
                try immediateOfOperandSize(&instruction)
            }
        case 0xB0...0xB7:
            instruction.op = .movRmImm
            instruction.size = 1
            instruction.isRegister = true
            instruction.rm = (opcode & 7) | rexB
            instruction.immediate = UInt64(try window.byte())
            byteRegisters(&instruction, reg: false, rm: true)
        case 0xB8...0xBF:
            instruction.op = .movRmImm
            instruction.isRegister = true
            instruction.rm = (opcode & 7) | rexB
            instruction.immediate = try window.immediate(Int(instruction.size))
        case 0xC0, 0xC1, 0xD0, 0xD1, 0xD2, 0xD3:
            instruction.op = opcode >= 0xD2 ? .shiftCL : .shiftImm
            if opcode & 1 == 0 { instruction.size = 1 }
            try modrm(&instruction)
            instruction.sub = instruction.reg & 7
            if opcode <= 0xC1 {
                instruction.immediate = UInt64(try window.byte())
            } else if opcode <= 0xD1 {
                instruction.immediate = 1
            }
            byteRegisters(&instruction, reg: false, rm: true)
        case 0xC2:
            instruction.op = .ret
            instruction.immediate = try window.immediate(2)
            instruction.size = stackSize
        case 0xC3:
            instruction.op = .ret
            instruction.size = stackSize
        case 0xC6, 0xC7:
            instruction.op = .movRmImm
            if opcode == 0xC6 { instruction.size = 1 }
            try modrm(&instruction)
            if instruction.reg & 7 != 0 { instruction.op = .undefined }
            if instruction.size == 1 {
                instruction.immediate = UInt64(try window.byte())
            } else {
                try immediateOfOperandSize(&instruction)
            }
            byteRegisters(&instruction, reg: false, rm: true)
        case 0xC8:
            instruction.op = .enter
            instruction.immediate = try window.immediate(2)
            instruction.sub = try window.byte()
            instruction.size = stackSize
        case 0xC9:
            instruction.op = .leave
            instruction.size = stackSize
        default:
            try oneByteHigh(opcode, &instruction)
        }
    }

    @inline(never)
    mutating func oneByteHigh(_ opcode: UInt8, _ instruction: inout Instruction) throws(X86Fault) {
        switch opcode {
        case 0xCB:
            instruction.op = .farRet
            instruction.size = rexW ? 8 : 4
        case 0xCC: instruction.op = .int3
        case 0xCD:
            instruction.op = .intN
            instruction.immediate = UInt64(try window.byte())
        case 0xCF:
            instruction.op = .iret
            instruction.size = rexW ? 8 : 4
        case 0xE0...0xE2:
            instruction.op = .loop
            instruction.sub = opcode & 3
            instruction.immediate = try branchTarget(displacementSize: 1)
        case 0xE3:
            instruction.op = .jrcxz
            instruction.immediate = try branchTarget(displacementSize: 1)
        case 0xE4, 0xE5, 0xE6, 0xE7:
            instruction.op = opcode < 0xE6 ? .inImm : .outImm
            instruction.size = opcode & 1 == 0 ? 1 : (operand16 ? 2 : 4)
            instruction.displacement = UInt64(try window.byte())
        case 0xEC, 0xED, 0xEE, 0xEF:
            instruction.op = opcode < 0xEE ? .inDX : .outDX
            instruction.size = opcode & 1 == 0 ? 1 : (operand16 ? 2 : 4)
        case 0xE8:
            instruction.op = .call
            instruction.immediate = try branchTarget(displacementSize: nearDisplacementSize)
            instruction.size = stackSize
        case 0xE9:
            instruction.op = .jmp
            instruction.immediate = try branchTarget(displacementSize: nearDisplacementSize)
        case 0xEA where !longMode:
            instruction.op = .farJmpImm
            instruction.immediate = try window.immediate(operand16 ? 2 : 4)
            instruction.displacement = try window.immediate(2)
        case 0xEB:
            instruction.op = .jmp
            instruction.immediate = try branchTarget(displacementSize: 1)
        case 0xF4: instruction.op = .hlt
        case 0xF5: instruction.op = .cmc
        case 0xF6, 0xF7:
            if opcode == 0xF6 { instruction.size = 1 }
            try modrm(&instruction)
            switch instruction.reg & 7 {
            case 0, 1:
                instruction.op = .testRmImm
                if instruction.size == 1 {
                    instruction.immediate = UInt64(try window.byte())
                } else {
                    try immediateOfOperandSize(&instruction)
                }
            case 2: instruction.op = .notRm
            case 3: instruction.op = .negRm
            case 4: instruction.op = .mulRm
            case 5: instruction.op = .imulRm
            case 6: instruction.op = .divRm
            default: instruction.op = .idivRm
            }
            byteRegisters(&instruction, reg: false, rm: true)
        case 0xF8: instruction.op = .clc
        case 0xF9: instruction.op = .stc
        case 0xFA: instruction.op = .cli
        case 0xFB: instruction.op = .sti
        case 0xFC: instruction.op = .cld
        case 0xFD: instruction.op = .std
        case 0xFE:
            instruction.size = 1
            try modrm(&instruction)
            switch instruction.reg & 7 {
            case 0: instruction.op = .incRm
            case 1: instruction.op = .decRm
            default: instruction.op = .undefined
            }
            byteRegisters(&instruction, reg: false, rm: true)
        case 0xFF:
            try modrm(&instruction)
            switch instruction.reg & 7 {
            case 0: instruction.op = .incRm
            case 1: instruction.op = .decRm
            case 2:
                instruction.op = .callRm
                instruction.size = stackSize
            case 4:
                instruction.op = .jmpRm
                instruction.size = stackSize
            case 5:
                instruction.op = instruction.isRegister ? .undefined : .farJmpRm
            case 6:
                instruction.op = .pushRm
                instruction.size = stackSize
            default: instruction.op = .unimplemented
            }
        case 0x0F:
            try twoByte(&instruction)
        case 0x9B:
            instruction.op = .fwait
        case 0xD8...0xDF:
            try x87(opcode, &instruction)
        default:
            instruction.op = .unimplemented
        }
    }
}
