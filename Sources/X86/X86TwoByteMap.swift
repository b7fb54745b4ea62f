/// The two-byte opcode map (0F xx).
extension InstructionDecoder {
    mutating func twoByte(_ instruction: inout Instruction) throws(X86Fault) {
        let opcode = try window.byte()
        switch opcode {
        case 0x00:
            try modrm(&instruction)
            switch instruction.reg & 7 {
            case 0, 1:
                // sldt, str: a register gets the operand size (zero-extended), memory 16 bits.
                instruction.op = instruction.reg & 7 == 0 ? .sldt : .str
                instruction.size = instruction.isRegister ? instruction.size : 2
            case 2, 3:
                instruction.op = instruction.reg & 7 == 2 ? .lldt : .ltr
                instruction.size = 2
            case 4, 5:
                instruction.op = instruction.reg & 7 == 4 ? .verr : .verw
                instruction.size = 2
            default: instruction.op = .unimplemented
            }
        case 0x01:
            let peek = try window.byte()
            window.position -= 1
            switch peek {
            case 0xC1:
                _ = try window.byte()
                instruction.op = .vmcall
            case 0xF8:
                _ = try window.byte()
                instruction.op = .swapgs
            case 0xF9:
                _ = try window.byte()
                instruction.op = .rdtscp
            case 0xD9:
                _ = try window.byte()
                instruction.op = .undefined  // vmmcall: the virtual CPU is not AMD (see CPUIDModel)
            default:
                try modrm(&instruction)
                // smsw and lmsw have register forms too (66 0F 01 E0 is smsw ax); the tables' do not.
                if instruction.reg & 7 == 4 {
                    instruction.op = .smsw
                    instruction.size = instruction.isRegister ? instruction.size : 2
                    return
                }
                if instruction.reg & 7 == 6 {
                    instruction.op = .lmsw
                    instruction.size = 2
                    return
                }
                if instruction.isRegister {
                    instruction.op = .unimplemented
                    return
                }
                switch instruction.reg & 7 {
                case 0: instruction.op = .sgdt
                case 1: instruction.op = .sidt
                case 2: instruction.op = .lgdt
                case 3: instruction.op = .lidt
                case 7: instruction.op = .invlpg
                default: instruction.op = .unimplemented
                }
            }
        case 0x05: instruction.op = .syscall
        case 0x06: instruction.op = .clts
        case 0x07:
            instruction.op = .sysret
            instruction.size = rexW ? 8 : 4
        case 0x08, 0x09: instruction.op = .wbinvd
        case 0x0B: instruction.op = .undefined  // ud2
        case 0x0D, 0x18...0x1F:
            // prefetch hints, endbr64 and the long nop forms
            try modrm(&instruction)
            instruction.op = .nop
        case 0x20...0x23:
            // mov to and from control (0x20, 0x22) and debug (0x21, 0x23) registers: the
            // operand is always a register, whatever the mod field says.
            try modrm(&instruction)
            instruction.op = [.movFromCR, .movFromDR, .movToCR, .movToDR][Int(opcode & 3)]
            instruction.size = longMode ? 8 : 4
            instruction.isRegister = true
        case 0x30: instruction.op = .wrmsr
        case 0x31: instruction.op = .rdtsc
        case 0x32: instruction.op = .rdmsr
        case 0x40...0x4F:
            instruction.op = .cmovcc
            instruction.sub = opcode & 0xF
            try modrm(&instruction)
        case 0x80...0x8F:
            instruction.op = .jcc
            instruction.sub = opcode & 0xF
            instruction.immediate = try branchTarget(displacementSize: nearDisplacementSize)
        default:
            try twoByteHigh(opcode, &instruction)
        }
    }

    @inline(never)
    mutating func twoByteHigh(_ opcode: UInt8, _ instruction: inout Instruction) throws(X86Fault) {
        switch opcode {
        case 0x90...0x9F:
            instruction.op = .setcc
            instruction.sub = opcode & 0xF
            instruction.size = 1
            try modrm(&instruction)
            byteRegisters(&instruction, reg: false, rm: true)
        case 0xA2: instruction.op = .cpuid
        case 0xA3, 0xAB, 0xB3, 0xBB:
            instruction.op = .bitTestReg
            instruction.sub = [0xA3: 0, 0xAB: 1, 0xB3: 2, 0xBB: 3][opcode]!
            try modrm(&instruction)
        case 0xA4, 0xA5, 0xAC, 0xAD:
            let left = opcode < 0xAC
            let byCL = opcode & 1 == 1
            instruction.op = left ? (byCL ? .shldCL : .shldImm) : (byCL ? .shrdCL : .shrdImm)
            try modrm(&instruction)
            if !byCL { instruction.immediate = UInt64(try window.byte()) }
        case 0xAE:
            try modrm(&instruction)
            // mfence orders stores before loads, the one reordering x86 allows, so it is a host
            // fence; lfence and sfence order nothing TSO does not. Memory forms: FloatDecoding.swift.
            if instruction.isRegister {
                instruction.op = instruction.reg & 7 == 6 ? .fence : (instruction.reg & 7 >= 5 ? .nop : .unimplemented)
            } else {
                stateSaveGroup(&instruction)
            }
        case 0xAF:
            instruction.op = .imulRegRm
            try modrm(&instruction)
        case 0xC7:
            // Group 9: only /1 with a memory operand, cmpxchg8b (CPUID's CX8). Its REX.W form,
            // cmpxchg16b, is #UD like the other members, as on a CPU without CX16 (not advertised).
            try modrm(&instruction)
            instruction.op = !instruction.isRegister && instruction.reg & 7 == 1 && !rexW ? .cmpxchg8b : .undefined
            instruction.size = 8
        case 0xB0, 0xB1:
            instruction.op = .cmpxchg
            if opcode == 0xB0 { instruction.size = 1 }
            try modrm(&instruction)
            byteRegisters(&instruction, reg: true, rm: true)
        case 0xB6, 0xB7, 0xBE, 0xBF:
            instruction.op = opcode < 0xBE ? .movzx : .movsx
            instruction.size2 = opcode & 1 == 0 ? 1 : 2
            try modrm(&instruction)
            if instruction.size2 == 1 { byteRegisters(&instruction, reg: false, rm: true, byteSource: true) }
        case 0xB8 where instruction.repeatPrefix == 0xF3:
            instruction.op = .popcnt
            instruction.repeatPrefix = 0
            try modrm(&instruction)
        case 0xBA:
            try modrm(&instruction)
            instruction.immediate = UInt64(try window.byte())
            let kind = instruction.reg & 7
            if kind < 4 {
                instruction.op = .unimplemented
            } else {
                instruction.op = .bitTestImm
                instruction.sub = kind - 4
            }
        case 0xBC, 0xBD:
            let counting = instruction.repeatPrefix == 0xF3
            instruction.op = opcode == 0xBC ? (counting ? .tzcnt : .bsf) : (counting ? .lzcnt : .bsr)
            instruction.repeatPrefix = 0
            try modrm(&instruction)
        case 0xC0, 0xC1:
            instruction.op = .xadd
            if opcode == 0xC0 { instruction.size = 1 }
            try modrm(&instruction)
            byteRegisters(&instruction, reg: true, rm: true)
        case 0xC8...0xCF:
            instruction.op = .bswap
            instruction.reg = (opcode & 7) | rexB
        default:
            try floatTwoByte(opcode, &instruction)
        }
    }
}
