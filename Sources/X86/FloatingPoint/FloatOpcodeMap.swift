/// Which x87, MMX, SSE, SSE2 and SSE3 encodings exist, and what each does with memory. nil means
/// #UD: an encoding missing here is never run on the host, so a guest cannot make the VMM take
/// SIGILL. Memory sizes are the operand's own (a scalar `addss` reads 4 bytes, `movhps` 8), so a
/// fault at a page boundary happens exactly where the processor's would.
enum FloatOpcodeMap {
    /// A two-byte (0F xx) instruction. `prefix` is the mandatory prefix (0, 66, F3 or F2),
    /// `digit` ModRM.reg without REX.R.
    static func twoByte(_ opcode: UInt8, prefix: UInt8, register: Bool, digit: UInt8, rexW: Bool) -> FloatForm? {
        let none = prefix == 0
        let generalBytes: UInt8 = rexW ? 8 : 4
        switch opcode {
        case 0x10, 0x11:
            let bytes: UInt8 = prefix == 0xF3 ? 4 : (prefix == 0xF2 ? 8 : 16)
            return FloatForm(opcode == 0x10 ? .sseRead : [.sse, .writesMemory], bytes)
        case 0x12, 0x16:
            switch prefix {
            case 0: return FloatForm(.sseRead, 8)  // movlps/movhps; register forms movhlps/movlhps
            case 0x66: return register ? nil : FloatForm(.sseRead, 8)
            case 0xF3: return FloatForm(.sseAligned, 16)  // movsldup, movshdup
            default: return opcode == 0x12 ? FloatForm(.sseRead, 8) : nil  // movddup
            }
        case 0x13, 0x17, 0x2B:
            guard prefix == 0 || prefix == 0x66, !register else { return nil }
            return opcode == 0x2B ? FloatForm([.sse, .writesMemory, .aligned], 16) : FloatForm([.sse, .writesMemory], 8)
        case 0x14, 0x15, 0x28, 0x54...0x57:
            return prefix == 0 || prefix == 0x66 ? FloatForm(.sseAligned, 16) : nil  // ps and pd forms
        case 0x29:
            return prefix == 0 || prefix == 0x66 ? FloatForm([.sse, .writesMemory, .aligned], 16) : nil
        case 0x2A:
            switch prefix {
            case 0, 0x66: return FloatForm(.sseRead, 8)  // cvtpi2ps/pd from mm/m64
            default: return FloatForm([.sse, .readsMemory, .rmIsGeneral], generalBytes)  // cvtsi2ss/sd
            }
        case 0x2C, 0x2D:
            switch prefix {
            case 0: return FloatForm(.sseRead, 8)
            case 0x66: return FloatForm(.sseAligned, 16)
            case 0xF3: return FloatForm([.sse, .readsMemory, .regIsGeneral], 4)
            default: return FloatForm([.sse, .readsMemory, .regIsGeneral], 8)
            }
        case 0x2E, 0x2F:
            return prefix == 0 ? FloatForm(.sseRead, 4) : (prefix == 0x66 ? FloatForm(.sseRead, 8) : nil)
        case 0x50:
            return (prefix == 0 || prefix == 0x66) && register ? FloatForm([.sse, .regIsGeneral]) : nil
        case 0x51, 0x58, 0x59, 0x5C...0x5F, 0xC2:
            return scalarOrPacked(prefix, extra: opcode == 0xC2 ? .immediate : [])
        case 0x52, 0x53:
            return prefix == 0 || prefix == 0xF3 ? scalarOrPacked(prefix) : nil
        case 0x5A:
            switch prefix {
            case 0: return FloatForm(.sseRead, 8)
            case 0x66: return FloatForm(.sseAligned, 16)
            case 0xF3: return FloatForm(.sseRead, 4)
            default: return FloatForm(.sseRead, 8)
            }
        case 0x5B:
            return prefix == 0xF2 ? nil : FloatForm(.sseAligned, 16)
        case 0x6C, 0x6D:
            return prefix == 0x66 ? FloatForm(.sseAligned, 16) : nil
        case 0x60...0x6B, 0x74...0x76, 0xD1...0xD5, 0xD8...0xDF, 0xE0...0xE5, 0xE8...0xEF, 0xF1...0xF6, 0xF8...0xFE:
            // MMX (no prefix, 64-bit operands; the low unpacks read 32 bits) or SSE2 (66).
            if prefix == 0x66 { return FloatForm(.sseAligned, 16) }
            return none ? FloatForm(.mmxRead, (0x60...0x62).contains(opcode) ? 4 : 8) : nil
        case 0x6E:
            switch prefix {
            case 0: return FloatForm([.mmx, .waits, .readsMemory, .rmIsGeneral], generalBytes)
            case 0x66: return FloatForm([.sse, .readsMemory, .rmIsGeneral], generalBytes)
            default: return nil
            }
        case 0x6F:
            switch prefix {
            case 0: return FloatForm(.mmxRead, 8)
            case 0x66: return FloatForm(.sseAligned, 16)
            case 0xF3: return FloatForm(.sseRead, 16)
            default: return nil
            }
        case 0x70:
            if none { return FloatForm([.mmx, .waits, .readsMemory, .immediate], 8) }
            return FloatForm([.sse, .readsMemory, .aligned, .immediate], 16)
        case 0x71...0x73:
            // Shifts by an immediate: register forms only; psrldq/pslldq (73 /3, /7) are SSE2 only.
            guard register, prefix == 0 || prefix == 0x66 else { return nil }
            let digits: [UInt8] = opcode == 0x73 ? (none ? [2, 6] : [2, 3, 6, 7]) : [2, 4, 6]
            guard digits.contains(digit) else { return nil }
            return FloatForm(none ? [.mmx, .waits, .immediate] : [.sse, .immediate])
        case 0x7C, 0x7D, 0xD0:
            return prefix == 0x66 || prefix == 0xF2 ? FloatForm(.sseAligned, 16) : nil
        case 0x7E:
            switch prefix {
            case 0: return FloatForm([.mmx, .waits, .writesMemory, .rmIsGeneral], generalBytes)
            case 0x66: return FloatForm([.sse, .writesMemory, .rmIsGeneral], generalBytes)
            case 0xF3: return FloatForm(.sseRead, 8)
            default: return nil
            }
        case 0x7F:
            switch prefix {
            case 0: return FloatForm([.mmx, .waits, .writesMemory], 8)
            case 0x66: return FloatForm([.sse, .writesMemory, .aligned], 16)
            case 0xF3: return FloatForm([.sse, .writesMemory], 16)
            default: return nil
            }
        case 0xC4:
            if none { return FloatForm([.mmx, .waits, .readsMemory, .rmIsGeneral, .immediate], 2) }
            return prefix == 0x66 ? FloatForm([.sse, .readsMemory, .rmIsGeneral, .immediate], 2) : nil
        case 0xC5:
            guard register, prefix == 0 || prefix == 0x66 else { return nil }
            return FloatForm(none ? [.mmx, .waits, .regIsGeneral, .immediate] : [.sse, .regIsGeneral, .immediate])
        case 0xC6:
            return prefix == 0 || prefix == 0x66 ? FloatForm([.sse, .readsMemory, .aligned, .immediate], 16) : nil
        case 0xD6:
            switch prefix {
            case 0x66: return FloatForm([.sse, .writesMemory], 8)  // movq xmm/m64, xmm
            case 0xF3, 0xF2: return register ? FloatForm([.sse, .mmx, .waits]) : nil  // movq2dq, movdq2q
            default: return nil
            }
        case 0xD7:
            guard register, prefix == 0 || prefix == 0x66 else { return nil }
            return FloatForm(none ? [.mmx, .waits, .regIsGeneral] : [.sse, .regIsGeneral])
        case 0xE6:
            switch prefix {
            case 0x66, 0xF2: return FloatForm(.sseAligned, 16)
            case 0xF3: return FloatForm(.sseRead, 8)
            default: return nil
            }
        case 0xE7:
            guard !register else { return nil }
            if none { return FloatForm([.mmx, .waits, .writesMemory], 8) }
            return prefix == 0x66 ? FloatForm([.sse, .writesMemory, .aligned], 16) : nil
        case 0xF0:
            return prefix == 0xF2 && !register ? FloatForm(.sseRead, 16) : nil  // lddqu
        default:
            return nil
        }
    }

    /// The four forms of an SSE arithmetic opcode: ps (aligned m128), pd (66), ss (F3, m32), sd (F2, m64).
    private static func scalarOrPacked(_ prefix: UInt8, extra: FloatTraits = []) -> FloatForm {
        switch prefix {
        case 0xF3: return FloatForm(FloatTraits.sseRead.union(extra), 4)
        case 0xF2: return FloatForm(FloatTraits.sseRead.union(extra), 8)
        default: return FloatForm(FloatTraits.sseAligned.union(extra), 16)
        }
    }

    /// An x87 instruction (escape D8...DF). `environmentBytes` is 28, or 14 with an operand-size
    /// prefix; the undocumented register-form aliases (e.g. DF C0 ffreep) are #UD here.
    static func x87(_ escape: UInt8, modrm: UInt8, environmentBytes: UInt8) -> FloatForm? {
        let digit = (modrm >> 3) & 7
        if modrm < 0xC0 {
            switch escape {
            case 0xD8: return FloatForm(.x87Read, 4)  // arithmetic with m32fp
            case 0xDA: return FloatForm(.x87Read, 4)  // with m32int
            case 0xDC: return FloatForm(.x87Read, 8)  // with m64fp
            case 0xDE: return FloatForm(.x87Read, 2)  // with m16int
            case 0xD9:
                switch digit {
                case 0: return FloatForm(.x87Read, 4)
                case 2, 3: return FloatForm(.x87Write, 4)
                case 4: return FloatForm([.x87, .waits, .readsMemory, .loadsControl, .loadsStatus], environmentBytes)
                case 5: return FloatForm([.x87, .waits, .readsMemory, .loadsControl], 2)
                case 6:
                    return FloatForm([.x87, .writesMemory, .storesEnvironment, .loadsControl], environmentBytes)
                case 7: return FloatForm([.x87, .writesMemory, .storesControl], 2)
                default: return nil
                }
            case 0xDB:
                switch digit {
                case 0: return FloatForm(.x87Read, 4)
                case 1, 2, 3: return FloatForm(.x87Write, 4)
                case 5: return FloatForm(.x87Read, 10)
                case 7: return FloatForm(.x87Write, 10)
                default: return nil
                }
            case 0xDD:
                switch digit {
                case 0: return FloatForm(.x87Read, 8)
                case 1, 2, 3: return FloatForm(.x87Write, 8)
                case 4:
                    return FloatForm([.x87, .waits, .readsMemory, .loadsControl, .loadsStatus], environmentBytes + 80)
                case 6:
                    return FloatForm(
                        [.x87, .writesMemory, .storesEnvironment, .loadsControl, .loadsStatus], environmentBytes + 80)
                case 7: return FloatForm([.x87, .writesMemory, .storesStatus], 2)
                default: return nil
                }
            default:  // 0xDF
                switch digit {
                case 0: return FloatForm(.x87Read, 2)
                case 1, 2, 3: return FloatForm(.x87Write, 2)
                case 4: return FloatForm(.x87Read, 10)
                case 5: return FloatForm(.x87Read, 8)
                case 6: return FloatForm(.x87Write, 10)
                default: return FloatForm(.x87Write, 8)
                }
            }
        }
        switch (escape, modrm) {
        case (0xD8, _), (0xDC, _):
            return FloatForm(.x87Register)
        case (0xD9, 0xC0...0xD0), (0xD9, 0xE0), (0xD9, 0xE1), (0xD9, 0xE4), (0xD9, 0xE5), (0xD9, 0xE8...0xEE),
            (0xD9, 0xF0...0xFF):
            return FloatForm(.x87Register)
        case (0xDA, 0xC0...0xDF), (0xDA, 0xE9), (0xDB, 0xC0...0xDF), (0xDB, 0xE8...0xF7):
            return FloatForm(.x87Register)
        case (0xDB, 0xE2):
            return FloatForm([.x87, .loadsStatus])  // fnclex
        case (0xDB, 0xE3):
            return FloatForm([.x87, .loadsControl, .loadsStatus])  // fninit
        case (0xDD, 0xC0...0xC7), (0xDD, 0xD0...0xEF), (0xDE, 0xC0...0xCF), (0xDE, 0xD9), (0xDE, 0xE0...0xFF):
            return FloatForm(.x87Register)
        case (0xDF, 0xE0):
            return FloatForm([.x87, .storesStatus])  // fnstsw ax
        case (0xDF, 0xE8...0xF7):
            return FloatForm(.x87Register)
        default:
            return nil
        }
    }
}
