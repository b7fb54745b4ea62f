/// What a decoded instruction does. Operand forms are normalised by the decoder (e.g. `add al, 5`
/// is `aluRmImm` with a register operand), so the executor has one case per behaviour.
enum Op: UInt8 {
    case unimplemented, undefined
    // Integer ALU; `sub` is add, or, adc, sbb, and, sub, xor, cmp.
    case aluRmReg, aluRegRm, aluRmImm
    case testRmReg, testRmImm
    case incRm, decRm, notRm, negRm
    case mulRm, imulRm, divRm, idivRm, imulRegRm, imulRegRmImm
    // Shifts and rotates; `sub` is rol, ror, rcl, rcr, shl, shr, sal, sar.
    case shiftImm, shiftCL, shldImm, shldCL, shrdImm, shrdCL
    case movRmReg, movRegRm, movRmImm, movzx, movsx, lea
    case xchgRmReg, cmpxchg, xadd
    case pushReg, pushImm, pushRm, popReg, popRm, pushf, popf, sahf, lahf
    case convertA, convertD
    case jcc, jmp, call, jmpRm, callRm, ret, loop, jrcxz
    case setcc, cmovcc
    // Bit tests; `sub` is bt, bts, btr, btc.
    case bitTestReg, bitTestImm
    case bsf, bsr, tzcnt, lzcnt, popcnt, bswap
    case movs, cmps, stos, lods, scas, ins, outs
    case leave, enter
    case nop, pause, clc, stc, cmc, cld, std, cli, sti, hlt
    case inImm, inDX, outImm, outDX
    case int3, intN, iret
    case syscall, sysret, cpuid, rdtsc, rdtscp, rdmsr, wrmsr
    case lgdt, lidt, sgdt, sidt, ltr, str, invlpg, swapgs, clts, wbinvd
    case movFromCR, movToCR, movFromSreg, movToSreg
    case farJmpImm, farJmpRm, farRet
    case vmcall
}

/// A decoded instruction as the cache holds it. `rip` and `generation` are the cache tag.
struct Instruction {
    var rip: UInt64 = ~0
    var generation: UInt32 = 0
    var op: Op = .unimplemented
    var length: UInt8 = 0
    /// Operand size in bytes (1, 2, 4, 8).
    var size: UInt8 = 4
    /// Second size: movzx/movsx source, string element, etc.
    var size2: UInt8 = 0
    /// Address size in bytes (4, 8).
    var addressSize: UInt8 = 8
    var isRegister = false
    /// ModRM.reg (with REX.R), or the register of a +r opcode.
    var reg: UInt8 = 0
    /// The register operand when `isRegister`, else the base register (0xFF: none).
    var rm: UInt8 = 0xFF
    var index: UInt8 = 0xFF
    var scale: UInt8 = 0
    /// Segment whose base is added (0xFF: none).
    var segment: UInt8 = 0xFF
    var sub: UInt8 = 0
    /// 0, 0xF3 (rep/repe) or 0xF2 (repne).
    var repeatPrefix: UInt8 = 0
    /// Whether CPL3 may execute from the page this came from.
    var userExecutable = false
    /// Displacement (absolute address for RIP-relative and moffs forms).
    var displacement: UInt64 = 0
    var immediate: UInt64 = 0
}

/// Reads instruction bytes: up to 15 from the page of `rip` and, if needed, the next page.
struct FetchWindow {
    var bytes: (UInt64, UInt64) = (0, 0)
    var available = 0
    /// Fault for the bytes past `available` (second page not mapped), raised only if they are needed.
    var pendingFault: X86Fault?
    var position = 0

    @inline(__always)
    mutating func byte() throws(X86Fault) -> UInt8 {
        guard position < 15 else { throw .exception(vector: X86Vector.generalProtection, errorCode: 0) }
        guard position < available else { throw pendingFault ?? .exception(vector: X86Vector.generalProtection, errorCode: 0) }
        let word = position < 8 ? bytes.0 : bytes.1
        let value = UInt8(truncatingIfNeeded: word >> (UInt64(position & 7) * 8))
        position += 1
        return value
    }

    mutating func immediate(_ size: Int) throws(X86Fault) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<size { value |= UInt64(try byte()) << (UInt64(index) * 8) }
        return value
    }

    /// Sign-extended immediate of `size` bytes.
    mutating func signed(_ size: Int) throws(X86Fault) -> UInt64 {
        let value = try immediate(size)
        return X86CPU.signExtend(value, size: UInt8(size))
    }
}

extension X86CPU {
    /// Fills the fetch window from the instruction at linear `rip`: the bytes of its page and, when
    /// fewer than 15 remain there, of the next. Returns the window, the physical address of the
    /// first byte, and whether CPL3 may execute from that page.
    func fetchWindow(at rip: UInt64) throws(X86Fault) -> (FetchWindow, UInt64, Bool) {
        var window = FetchWindow()
        let physical = try translate(rip, write: false, fetch: true)
        guard physical < ramSize else {
            throw .shutdown("instruction fetch from 0x\(String(physical, radix: 16)), outside guest RAM")
        }
        let userExecutable = cpl == 3 || isUserExecutable(rip)
        let inPage = Int(4096 - (rip & 0xFFF))
        let first = min(16, inPage, Int(min(16, ramSize - physical)))
        var count = first
        withUnsafeMutableBytes(of: &window.bytes) {
            $0.baseAddress!.copyMemory(from: hostPointer(physical: physical), byteCount: first)
        }
        if inPage < 16 {
            do {
                let next = try translate(rip &+ UInt64(inPage), write: false, fetch: true)
                if next < ramSize {
                    let more = min(16 - first, Int(min(16, ramSize - next)))
                    withUnsafeMutableBytes(of: &window.bytes) {
                        $0.baseAddress!.advanced(by: first).copyMemory(from: hostPointer(physical: next), byteCount: more)
                    }
                    markCode(physical: next, length: more)
                    count += more
                }
            } catch {
                window.pendingFault = error
            }
        }
        window.available = count
        return (window, physical, userExecutable)
    }

    /// Whether CPL3 may execute from the page of `linear` (so cached code needs no re-check at CPL3).
    /// Leaves no trace: CR2 and the CPL are restored.
    func isUserExecutable(_ linear: UInt64) -> Bool {
        let saved = cpl
        let savedCR2 = cr2
        cpl = 3
        defer {
            cpl = saved
            cr2 = savedCR2
        }
        do { _ = try translate(linear, write: false, fetch: true) } catch { return false }
        return true
    }

    static func isLegacyPrefix(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65: return true
        default: return false
        }
    }

    /// `lock` is valid only on read-modify-write instructions with a memory destination.
    static func lockable(_ instruction: Instruction) -> Bool {
        guard !instruction.isRegister else { return false }
        switch instruction.op {
        case .aluRmReg, .aluRmImm: return instruction.sub != 7
        case .bitTestReg, .bitTestImm: return instruction.sub != 0
        case .incRm, .decRm, .notRm, .negRm, .xchgRmReg, .cmpxchg, .xadd: return true
        default: return false
        }
    }

    /// Decodes the instruction at linear `rip`.
    func decode(at rip: UInt64) throws(X86Fault) -> Instruction {
        var (window, physical, userExecutable) = try fetchWindow(at: rip)
        var instruction = Instruction()
        instruction.rip = rip
        instruction.userExecutable = userExecutable
        let longMode = is64BitCode
        var operandOverride = false
        var addressOverride = false
        var locked = false
        var rex: UInt8 = 0
        var segment: UInt8 = 0xFF
        var opcode: UInt8 = 0
        prefixes: while true {
            opcode = try window.byte()
            switch opcode {
            case 0x66: operandOverride = true
            case 0x67: addressOverride = true
            case 0xF0: locked = true  // one vCPU: every access is already atomic; only validity is checked
            case 0xF2, 0xF3: instruction.repeatPrefix = opcode
            case 0x26: segment = 0
            case 0x2E: segment = 1
            case 0x36: segment = 2
            case 0x3E: segment = 3
            case 0x64: segment = 4
            case 0x65: segment = 5
            case 0x40...0x4F where longMode:
                rex = opcode
                opcode = try window.byte()
                // A REX prefix counts only directly before the opcode.
                if Self.isLegacyPrefix(opcode) {
                    rex = 0
                    window.position -= 1
                    continue prefixes
                }
                if (0x40...0x4F).contains(opcode) {
                    window.position -= 1
                    continue prefixes
                }
                break prefixes
            default: break prefixes
            }
        }
        let rexW = rex & 8 != 0
        let rexR: UInt8 = rex & 4 != 0 ? 8 : 0
        let rexX: UInt8 = rex & 2 != 0 ? 8 : 0
        let rexB: UInt8 = rex & 1 != 0 ? 8 : 0
        let operandSize: UInt8 = rexW ? 8 : (operandOverride ? 2 : 4)
        // Near branches and stack operations default to 64-bit in long mode.
        let stackSize: UInt8 = longMode ? (operandOverride ? 2 : 8) : (operandOverride ? 2 : 4)
        instruction.addressSize = longMode ? (addressOverride ? 4 : 8) : 4
        if !longMode && addressOverride {
            instruction.op = .unimplemented  // 16-bit addressing
            instruction.length = UInt8(window.position)
            return instruction
        }
        if longMode {
            instruction.segment = segment == 4 || segment == 5 ? segment : 0xFF
        } else {
            instruction.segment = segment
        }
        instruction.size = operandSize
        var ripRelative = false

        func modrm(_ instruction: inout Instruction) throws(X86Fault) {
            let byte = try window.byte()
            let mode = byte >> 6
            instruction.reg = ((byte >> 3) & 7) | rexR
            let rmField = byte & 7
            if mode == 3 {
                instruction.isRegister = true
                instruction.rm = rmField | rexB
                return
            }
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

        func immediateOfOperandSize(_ instruction: inout Instruction) throws(X86Fault) {
            instruction.immediate = try window.signed(instruction.size == 2 ? 2 : 4) & Self.mask(size: instruction.size)
        }

        /// Without REX, byte registers 4...7 are AH, CH, DH, BH (encoded 16...19).
        func byteRegisters(_ instruction: inout Instruction, reg: Bool, rm: Bool, byteSource: Bool = false) {
            guard rex == 0, instruction.size == 1 || byteSource else { return }
            if reg && (4...7).contains(instruction.reg) { instruction.reg += 12 }
            if rm && instruction.isRegister && (4...7).contains(instruction.rm) { instruction.rm += 12 }
        }

        func branchTarget(_ relative: UInt64) -> UInt64 {
            let target = rip &+ UInt64(window.position) &+ relative
            return longMode ? target : target & 0xFFFF_FFFF
        }

        func twoByte(_ instruction: inout Instruction) throws(X86Fault) {
            let opcode = try window.byte()
            switch opcode {
            case 0x00:
                try modrm(&instruction)
                switch instruction.reg & 7 {
                case 1:
                    instruction.op = .str
                    instruction.size = instruction.isRegister ? instruction.size : 2
                case 3:
                    instruction.op = .ltr
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
            case 0x20, 0x22:
                try modrm(&instruction)
                instruction.op = opcode == 0x20 ? .movFromCR : .movToCR
                instruction.size = is64BitCode ? 8 : 4
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
                instruction.immediate = branchTarget(try window.signed(4))
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
                // lfence, mfence, sfence, clflush: ordering and cache control have no effect on one interpreted CPU.
                instruction.op =
                    instruction.isRegister
                    ? (instruction.reg & 7 >= 5 ? .nop : .unimplemented) : (instruction.reg & 7 == 7 ? .nop : .unimplemented)
            case 0xAF:
                instruction.op = .imulRegRm
                try modrm(&instruction)
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
                instruction.op = .unimplemented
            }
        }

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
            instruction.immediate = try window.signed(operandOverride ? 2 : 4)
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
            instruction.size = opcode == 0x6C ? 1 : (operandOverride ? 2 : 4)
        case 0x6E, 0x6F:
            instruction.op = .outs
            instruction.size = opcode == 0x6E ? 1 : (operandOverride ? 2 : 4)
        case 0x70...0x7F:
            instruction.op = .jcc
            instruction.sub = opcode & 0xF
            let relative = try window.signed(1)
            instruction.immediate = branchTarget(relative)
        case 0x80, 0x81, 0x83:
            instruction.op = .aluRmImm
            if opcode == 0x80 { instruction.size = 1 }
            try modrm(&instruction)
            instruction.sub = instruction.reg & 7
            if opcode == 0x81 {
                try immediateOfOperandSize(&instruction)
            } else {
                instruction.immediate = try window.signed(1) & Self.mask(size: instruction.size)
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
            instruction.immediate = branchTarget(try window.signed(1))
        case 0xE3:
            instruction.op = .jrcxz
            instruction.immediate = branchTarget(try window.signed(1))
        case 0xE4, 0xE5, 0xE6, 0xE7:
            instruction.op = opcode < 0xE6 ? .inImm : .outImm
            instruction.size = opcode & 1 == 0 ? 1 : (operandOverride ? 2 : 4)
            instruction.displacement = UInt64(try window.byte())
        case 0xEC, 0xED, 0xEE, 0xEF:
            instruction.op = opcode < 0xEE ? .inDX : .outDX
            instruction.size = opcode & 1 == 0 ? 1 : (operandOverride ? 2 : 4)
        case 0xE8:
            instruction.op = .call
            instruction.immediate = branchTarget(try window.signed(4))
            instruction.size = stackSize
        case 0xE9:
            instruction.op = .jmp
            instruction.immediate = branchTarget(try window.signed(4))
        case 0xEA where !longMode:
            instruction.op = .farJmpImm
            instruction.immediate = try window.immediate(operandOverride ? 2 : 4)
            instruction.displacement = try window.immediate(2)
        case 0xEB:
            instruction.op = .jmp
            instruction.immediate = branchTarget(try window.signed(1))
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
        default:
            instruction.op = .unimplemented
        }
        if locked && !Self.lockable(instruction) { instruction.op = .undefined }
        instruction.length = UInt8(window.position)
        if ripRelative { instruction.displacement &+= rip &+ UInt64(instruction.length) }
        markCode(physical: physical, length: min(Int(instruction.length), Int(4096 - (rip & 0xFFF))))
        return instruction
    }
}
