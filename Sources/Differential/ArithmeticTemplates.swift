import Machine
import Results
import X86

/// Case templates for the arithmetic instructions: ALU, test, unary, multiply, divide, shifts.
extension CaseBuilder {

    static let aluNames = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"]

    mutating func aluFlags(_ kind: Int) {
        if kind == 1 || kind == 4 || kind == 6 {
            flagEffect(defines: allFlags & ~adjustFlag, undefines: adjustFlag)
        } else {
            flagEffect(defines: allFlags)
        }
    }

    mutating func alu() -> Bool {
        let kind = next(8)
        let size = sizeChoice()
        reads(kind == 2 || kind == 3 ? carryFlag : 0)
        let toMemory = chance(50)
        let opcode = UInt8(kind * 8) + (size == 1 ? 0 : 1) + (toMemory ? 0 : 2)
        let ok: Bool
        if toMemory {
            let target: Operand = kind == 7 ? anyOperand(size: size) : destinationOperand(size: size)
            ok = emit(
                "\(Self.aluNames[kind]) r/m\(size * 8),r", opcode: [opcode], size: size, reg: source(size: size), rm: target)
        } else {
            let register = kind == 7 ? source(size: size) : destination(size: size)
            ok = emit(
                "\(Self.aluNames[kind]) r\(size * 8),r/m", opcode: [opcode], size: size, reg: register, rm: anyOperand(size: size)
            )
        }
        if ok { aluFlags(kind) }
        return ok
    }

    mutating func aluImmediate() -> Bool {
        let kind = next(8)
        let size = sizeChoice()
        reads(kind == 2 || kind == 3 ? carryFlag : 0)
        let target: Operand = kind == 7 ? anyOperand(size: size) : destinationOperand(size: size)
        let ok: Bool
        switch next(3) {
        case 0 where size > 1:
            ok = emit(
                "\(Self.aluNames[kind]) r/m\(size * 8),imm8", opcode: [0x83], size: size, reg: UInt8(kind), regIsRegister: false,
                rm: target, immediate: [UInt8(truncatingIfNeeded: interestingValue())])
        case 1:
            // Accumulator short form.
            code +=
                (size == 2 ? [0x66] : []) + (size == 8 ? [0x48] : []) + [UInt8(kind * 8) + (size == 1 ? 4 : 5)]
                + immediate(interestingValue(), size: min(size, 4))
            names.append("\(Self.aluNames[kind]) acc\(size * 8),imm")
            ok = true
        default:
            ok = emit(
                "\(Self.aluNames[kind]) r/m\(size * 8),imm", opcode: [size == 1 ? 0x80 : 0x81], size: size, reg: UInt8(kind),
                regIsRegister: false,
                rm: target, immediate: immediate(interestingValue(), size: min(size, 4)))
        }
        if ok { aluFlags(kind) }
        return ok
    }

    mutating func test() -> Bool {
        let size = sizeChoice()
        let ok: Bool
        if chance(50) {
            ok = emit(
                "test r/m\(size * 8),r", opcode: [size == 1 ? 0x84 : 0x85], size: size, reg: source(size: size),
                rm: anyOperand(size: size))
        } else {
            ok = emit(
                "test r/m\(size * 8),imm", opcode: [size == 1 ? 0xF6 : 0xF7], size: size, reg: 0, regIsRegister: false,
                rm: anyOperand(size: size),
                immediate: immediate(interestingValue(), size: min(size, 4)))
        }
        if ok { flagEffect(defines: allFlags & ~adjustFlag, undefines: adjustFlag) }
        return ok
    }

    mutating func unary() -> Bool {
        let size = sizeChoice()
        let which = next(4)  // inc, dec, not, neg
        let target = destinationOperand(size: size)
        let ok: Bool
        if which < 2 {
            ok = emit(
                which == 0 ? "inc" : "dec", opcode: [size == 1 ? 0xFE : 0xFF], size: size, reg: UInt8(which),
                regIsRegister: false, rm: target)
            if ok { flagEffect(defines: allFlags & ~carryFlag) }
        } else {
            ok = emit(
                which == 2 ? "not" : "neg", opcode: [size == 1 ? 0xF6 : 0xF7], size: size, reg: UInt8(which),
                regIsRegister: false, rm: target)
            if ok && which == 3 { flagEffect(defines: allFlags) }
        }
        return ok
    }

    mutating func multiplyOne() -> Bool {
        let size = sizeChoice()
        let signed = chance(50)
        let ok = emit(
            signed ? "imul r/m\(size * 8)" : "mul r/m\(size * 8)", opcode: [size == 1 ? 0xF6 : 0xF7], size: size,
            reg: signed ? 5 : 4,
            regIsRegister: false, rm: anyOperand(size: size))
        if ok { flagEffect(defines: carryFlag | overflowFlag, undefines: signFlag | zeroFlag | adjustFlag | parityFlag) }
        return ok
    }

    mutating func divide() -> Bool {
        let size = sizeChoice()
        let signed = chance(50)
        // Usually make the quotient fit (high half = 0 / sign extension); sometimes leave it to chance (#DE).
        if chance(80) {
            if signed {
                code += size == 1 ? [0x66, 0x98] : (size == 2 ? [0x66, 0x99] : (size == 4 ? [0x99] : [0x48, 0x99]))
                names.append(size == 1 ? "cbw" : "cwd/cdq/cqo")
            } else {
                code += size == 1 ? [0x30, 0xE4] : [0x31, 0xD2]  // xor ah,ah / xor edx,edx
                names.append("xor")
                flagEffect(defines: allFlags & ~adjustFlag, undefines: adjustFlag)
            }
        }
        var divisor: Operand = .register(pick([1, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15]))
        if chance(30) { divisor = memoryOperand(size: size) }
        if case .register(let register) = divisor, chance(90) {
            var value = interestingValue()
            if signed && value & ((1 << 63) | 0xFF) == ((1 << 63) | 0xFF) { value &= ~1 }  // avoid -1 (overflow)
            load(register, value | (chance(95) ? 1 : 0))
        }
        let ok = emit(
            signed ? "idiv r/m\(size * 8)" : "div r/m\(size * 8)", opcode: [size == 1 ? 0xF6 : 0xF7], size: size,
            reg: signed ? 7 : 6,
            regIsRegister: false, rm: divisor)
        if ok { flagEffect(defines: 0, undefines: allFlags) }
        return ok
    }

    mutating func multiplyTwo() -> Bool {
        let size = sizeChoice(allowByte: false)
        let register = destination(size: size)
        let ok: Bool
        switch next(3) {
        case 0: ok = emit("imul r,r/m", opcode: [0x0F, 0xAF], size: size, reg: register, rm: anyOperand(size: size))
        case 1:
            ok = emit(
                "imul r,r/m,imm8", opcode: [0x6B], size: size, reg: register, rm: anyOperand(size: size),
                immediate: [UInt8(truncatingIfNeeded: interestingValue())])
        default:
            ok = emit(
                "imul r,r/m,imm", opcode: [0x69], size: size, reg: register, rm: anyOperand(size: size),
                immediate: immediate(interestingValue(), size: min(size, 4)))
        }
        if ok { flagEffect(defines: carryFlag | overflowFlag, undefines: signFlag | zeroFlag | adjustFlag | parityFlag) }
        return ok
    }

    mutating func shiftCount(size: Int) -> UInt8 {
        // For 8/16-bit operands keep the masked count below the width (larger counts leave
        // flags/results undefined); wider operands get any count, including ones that wrap the mask.
        if size <= 2 { return UInt8(next(size * 8)) }
        return UInt8(next(256))
    }

    mutating func shift() -> Bool {
        let kind = next(8)
        let size = sizeChoice()
        let target = destinationOperand(size: size)
        let form = next(3)  // imm8, by 1, by CL
        var count: UInt8 = form == 1 ? 1 : shiftCount(size: size)
        if form == 2 {
            code += [0xB1, count]  // mov cl, count
            names.append("mov cl,imm8")
        }
        let masked = Int(count) & (size == 8 ? 63 : 31)
        reads(kind == 2 || kind == 3 ? carryFlag : 0)
        let names = ["rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"]
        let ok: Bool
        switch form {
        case 0:
            ok = emit(
                "\(names[kind]) r/m\(size * 8),imm8", opcode: [size == 1 ? 0xC0 : 0xC1], size: size, reg: UInt8(kind),
                regIsRegister: false, rm: target, immediate: [count])
        case 1:
            ok = emit(
                "\(names[kind]) r/m\(size * 8),1", opcode: [size == 1 ? 0xD0 : 0xD1], size: size, reg: UInt8(kind),
                regIsRegister: false, rm: target)
        default:
            ok = emit(
                "\(names[kind]) r/m\(size * 8),cl", opcode: [size == 1 ? 0xD2 : 0xD3], size: size, reg: UInt8(kind),
                regIsRegister: false, rm: target)
        }
        guard ok else { return false }
        count = UInt8(masked)
        if masked != 0 {
            let overflowDefined = masked == 1
            switch kind {
            case 0, 1, 2, 3:
                flagEffect(
                    defines: carryFlag | (overflowDefined ? overflowFlag : 0), undefines: overflowDefined ? 0 : overflowFlag)
            default:
                flagEffect(
                    defines: carryFlag | signFlag | zeroFlag | parityFlag | (overflowDefined ? overflowFlag : 0),
                    undefines: adjustFlag | (overflowDefined ? 0 : overflowFlag))
            }
        }
        return true
    }

    mutating func doubleShift() -> Bool {
        let size = sizeChoice(allowByte: false)
        let left = chance(50)
        let byCL = chance(50)
        let count = UInt8(size == 2 ? next(16) : next(256))
        if byCL {
            code += [0xB1, count]
            names.append("mov cl,imm8")
        }
        let ok = emit(
            left ? "shld" : "shrd", opcode: [0x0F, (left ? 0xA4 : 0xAC) + (byCL ? 1 : 0)], size: size, reg: source(size: size),
            rm: destinationOperand(size: size), immediate: byCL ? [] : [count])
        guard ok else { return false }
        let masked = Int(count) & (size == 8 ? 63 : 31)
        if masked != 0 {
            flagEffect(
                defines: carryFlag | signFlag | zeroFlag | parityFlag | (masked == 1 ? overflowFlag : 0),
                undefines: adjustFlag | (masked == 1 ? 0 : overflowFlag))
        }
        return true
    }

}
