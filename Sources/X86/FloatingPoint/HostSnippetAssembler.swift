/// Assembles the host snippet that runs one guest x87/MMX/SSE instruction on the work block of
/// `HostFloatingPoint` (passed in rdi; System V: rbx, rbp, r12-r15, the MXCSR control bits and
/// the x87 control word are the caller's and are restored; the x87 stack is left empty).
enum HostSnippetAssembler {
    /// The general registers loaded and stored around the instruction: all but rsp and rdi.
    private static let carried: [UInt8] = [0, 1, 2, 3, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15]
    /// Where an explicit rsp or rdi operand is renamed to.
    static let renamedRegister: UInt8 = 11

    static func snippet(_ encoding: HostEncoding, traits: FloatTraits) -> [UInt8] {
        let (instruction, renamed) = hostInstruction(encoding, traits: traits)
        var code: [UInt8] = [0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57]  // push rbx rbp r12-r15
        code += [0x0F, 0xAE] + rdiOperand(digit: 3, HostFloatingPoint.hostMXCSROffset)  // stmxcsr
        code += [0xD9] + rdiOperand(digit: 7, HostFloatingPoint.hostControlOffset)  // fnstcw
        code += [0x0F, 0xAE] + rdiOperand(digit: 1, HostFloatingPoint.stateOffset)  // fxrstor
        for register in carried {
            let slot = register == renamedRegister ? (renamed ?? register) : register
            code += move(load: true, register: register, slot: slot)
        }
        code += [0xFF] + rdiOperand(digit: 6, HostFloatingPoint.flagsOffset)  // push [flags]
        code += [0x9D]  // popfq
        code += instruction
        code += [0x9C]  // pushfq
        code += [0x8F] + rdiOperand(digit: 0, HostFloatingPoint.flagsOffset)  // pop [flags]
        for register in carried {
            let slot = register == renamedRegister ? (renamed ?? register) : register
            code += move(load: false, register: register, slot: slot)
        }
        code += [0x0F, 0xAE] + rdiOperand(digit: 0, HostFloatingPoint.stateOffset)  // fxsave
        code += [0xDB, 0xE3]  // fninit: the x87 stack empty again, as the ABI requires
        code += [0xD9] + rdiOperand(digit: 5, HostFloatingPoint.hostControlOffset)  // fldcw
        code += [0x0F, 0xAE] + rdiOperand(digit: 2, HostFloatingPoint.hostMXCSROffset)  // ldmxcsr
        code += [0x41, 0x5F, 0x41, 0x5E, 0x41, 0x5D, 0x41, 0x5C, 0x5D, 0x5B, 0xC3]  // pop r15-r12 rbp rbx; ret
        return code
    }

    /// The guest's instruction for the host: the same prefix, opcode, ModRM.reg and immediate;
    /// a memory operand becomes [rdi + scratch]; an rsp or rdi general-register operand becomes
    /// r11 (returned: the guest register r11 stands for).
    static func hostInstruction(_ encoding: HostEncoding, traits: FloatTraits) -> ([UInt8], UInt8?) {
        var reg = (encoding.modrm >> 3) & 7 | (encoding.rex & 4 != 0 ? 8 : 0)
        var rm = encoding.modrm & 7 | (encoding.rex & 1 != 0 ? 8 : 0)
        var renamed: UInt8?
        var bytes: [UInt8] = []
        if encoding.prefix != 0 { bytes.append(encoding.prefix) }
        if encoding.escape == 0x0F {
            if traits.contains(.regIsGeneral) && (reg == 4 || reg == 7) {
                renamed = reg
                reg = renamedRegister
            }
            if !encoding.memory && traits.contains(.rmIsGeneral) && (rm == 4 || rm == 7) {
                renamed = rm
                rm = renamedRegister
            }
            let rex = 0x40 | (encoding.rex & 8) | (reg >= 8 ? 4 : 0) | (!encoding.memory && rm >= 8 ? 1 : 0)
            if rex != 0x40 { bytes.append(rex) }
            bytes += [0x0F, encoding.opcode]
            if encoding.opcode == 0x77 { return (bytes, nil) }  // emms has no ModRM
        } else {
            bytes.append(encoding.escape)
        }
        if encoding.memory {
            bytes += rdiOperand(digit: reg & 7, HostFloatingPoint.scratchOffset)
        } else {
            bytes.append(0xC0 | (reg & 7) << 3 | (rm & 7))
        }
        if traits.contains(.immediate) { bytes.append(encoding.immediate) }
        return (bytes, renamed)
    }

    /// ModRM (mod 10, rm rdi) and disp32 for [rdi + offset].
    private static func rdiOperand(digit: UInt8, _ offset: Int) -> [UInt8] {
        let displacement = UInt32(offset)
        return [0x80 | digit << 3 | 7] + (0..<4).map { UInt8(truncatingIfNeeded: displacement >> ($0 * 8)) }
    }

    /// mov register, [rdi + slot * 8] (or the store).
    private static func move(load: Bool, register: UInt8, slot: UInt8) -> [UInt8] {
        let rex: UInt8 = 0x48 | (register >= 8 ? 4 : 0)
        return [rex, load ? 0x8B : 0x89] + rdiOperand(digit: register & 7, HostFloatingPoint.generalOffset + Int(slot) * 8)
    }
}
