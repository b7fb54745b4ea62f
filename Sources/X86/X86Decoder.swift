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
    case xchgRmReg, cmpxchg, cmpxchg8b, xadd
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
    case lgdt, lidt, sgdt, sidt, ltr, str, verr, verw, invlpg, swapgs, clts, wbinvd, smsw, lmsw, sldt, lldt
    case movFromCR, movToCR, movFromDR, movToDR, movFromSreg, movToSreg
    case farJmpImm, farJmpRm, farRet
    case vmcall
    /// mfence: a full barrier against the other vCPUs.
    case fence
    /// x87, MMX and SSE: run on the host (FloatingPoint/), or done by the executor itself.
    case hostFloat, fxsave, fxrstor, ldmxcsr, stmxcsr, fwait, maskMove
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
    /// Address size in bytes (2, 4, 8).
    var addressSize: UInt8 = 8
    var isRegister = false
    /// A locked read-modify-write of memory (`lock` prefix, or `xchg` with memory).
    var locked = false
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
        case .incRm, .decRm, .notRm, .negRm, .xchgRmReg, .cmpxchg, .cmpxchg8b, .xadd: return true
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
            case 0xF0: locked = true
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
        let sixteenBitCode = is16BitCode
        let operandSize: UInt8 = rex & 8 != 0 ? 8 : (operandOverride != sixteenBitCode ? 2 : 4)
        instruction.addressSize = longMode ? (addressOverride ? 4 : 8) : (addressOverride != sixteenBitCode ? 2 : 4)
        if longMode {
            instruction.segment = segment == 4 || segment == 5 ? segment : 0xFF
        } else {
            instruction.segment = segment
        }
        instruction.size = operandSize
        var decoder = InstructionDecoder(
            window: window, rip: rip, longMode: longMode, rex: rex, operandOverride: operandOverride,
            sixteenBitCode: sixteenBitCode, addressSize16: instruction.addressSize == 2)
        try decoder.oneByte(opcode, &instruction)
        window = decoder.window
        // xchg with memory is locked without the prefix.
        let lockable = Self.lockable(instruction)
        if locked && !lockable { instruction.op = .undefined }
        instruction.locked = lockable && (locked || instruction.op == .xchgRmReg)
        instruction.length = UInt8(window.position)
        if decoder.ripRelative { instruction.displacement &+= rip &+ UInt64(instruction.length) }
        markCode(physical: physical, length: min(Int(instruction.length), Int(4096 - (rip & 0xFFF))))
        return instruction
    }
}
