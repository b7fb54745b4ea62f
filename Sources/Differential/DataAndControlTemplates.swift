import Machine
import Results
import X86

/// Case templates for moves, exchanges, the stack, flags, branches and calls, bit scans, string
/// instructions, lock prefixes and faults.
extension CaseBuilder {
    mutating func move() -> Bool {
        let size = sizeChoice()
        switch next(5) {
        case 0:
            return emit(
                "mov r/m,r", opcode: [size == 1 ? 0x88 : 0x89], size: size, reg: source(size: size),
                rm: destinationOperand(size: size))
        case 1:
            return emit(
                "mov r,r/m", opcode: [size == 1 ? 0x8A : 0x8B], size: size, reg: destination(size: size),
                rm: anyOperand(size: size))
        case 2:
            return emit(
                "mov r/m,imm", opcode: [size == 1 ? 0xC6 : 0xC7], size: size, reg: 0, regIsRegister: false,
                rm: destinationOperand(size: size),
                immediate: immediate(interestingValue(), size: min(size, 4)))
        case 3 where size == 8:
            load(pick(Self.writable), interestingValue())
            return true
        default:
            let register = destination(size: size)
            if register >= 16 {
                code += [0xB0 + register - 12, UInt8(truncatingIfNeeded: interestingValue())]
            } else {
                var bytes: [UInt8] = size == 2 ? [0x66] : []
                let rex: UInt8 = (register >= 8 ? 0x41 : 0) | (size == 1 && (4...7).contains(register) ? 0x40 : 0)
                if rex != 0 { bytes.append(rex) }
                bytes.append((size == 1 ? 0xB0 : 0xB8) + (register & 7))
                bytes += immediate(interestingValue(), size: min(size, 4))
                code += bytes
            }
            names.append("mov r,imm")
            return true
        }
    }

    mutating func extend() -> Bool {
        let size = pick([2, 4, 8])
        switch next(3) {
        case 0:
            let from = pick([1, 2])
            guard from < size else { return false }
            return emit(
                "movzx r\(size * 8),r/m\(from * 8)", opcode: [0x0F, from == 1 ? 0xB6 : 0xB7], size: size,
                reg: destination(size: size),
                rm: from == 1 ? (chance(40) ? memoryOperand(size: 1) : .register(source(size: 1))) : anyOperand(size: 2),
                byteOperands: false)
        case 1:
            let from = pick([1, 2])
            guard from < size else { return false }
            let rm: Operand = from == 1 ? (chance(40) ? memoryOperand(size: 1) : .register(UInt8(next(16)))) : anyOperand(size: 2)
            // movsx with a byte register: REX selects spl..dil, so keep it to registers the REX rule leaves alone.
            if case .register(let register) = rm, from == 1, (4...7).contains(register) { return false }
            return emit(
                "movsx r\(size * 8),r/m\(from * 8)", opcode: [0x0F, from == 1 ? 0xBE : 0xBF], size: size,
                reg: destination(size: size), rm: rm,
                byteOperands: false)
        default:
            return emit("movsxd r64,r/m32", opcode: [0x63], size: 8, reg: destination(size: 8), rm: anyOperand(size: 4))
        }
    }

    mutating func lea() -> Bool {
        let size = pick([2, 4, 8])
        return emit("lea r\(size * 8),m", opcode: [0x8D], size: size, reg: destination(size: size), rm: memoryOperand(size: 1))
    }

    mutating func exchange() -> Bool {
        let size = sizeChoice()
        switch next(4) {
        case 0:
            return emit(
                "xchg r/m,r", opcode: [size == 1 ? 0x86 : 0x87], size: size, reg: destination(size: size),
                rm: destinationOperand(size: size))
        case 1 where size >= 2:
            let register = pick(Self.writable.filter { $0 != 0 })
            code +=
                (size == 2 ? [0x66] : [])
                + ((size == 8 || register >= 8) ? [0x40 | (size == 8 ? 8 : 0) | (register >= 8 ? 1 : 0)] : [])
                + [0x90 + (register & 7)]
            names.append("xchg acc,r")
            return true
        case 2:
            let ok = emit(
                "cmpxchg r/m,r", opcode: [0x0F, size == 1 ? 0xB0 : 0xB1], size: size, reg: source(size: size),
                rm: destinationOperand(size: size))
            if ok { flagEffect(defines: allFlags) }
            return ok
        default:
            let ok = emit(
                "xadd r/m,r", opcode: [0x0F, size == 1 ? 0xC0 : 0xC1], size: size, reg: destination(size: size),
                rm: destinationOperand(size: size))
            if ok { flagEffect(defines: allFlags) }
            return ok
        }
    }

    mutating func stack() -> Bool {
        guard pushes < 6 else { return false }
        pushes += 1
        switch next(4) {
        case 0:
            let register = UInt8(next(16))
            code += (register >= 8 ? [0x41] : []) + [0x50 + (register & 7)]
            names.append("push r64")
        case 1:
            if chance(50) {
                code += [0x6A, UInt8(truncatingIfNeeded: interestingValue())]
            } else {
                code += [0x68] + le32(UInt32(truncatingIfNeeded: interestingValue()))
            }
            names.append("push imm")
        case 2:
            guard emit("push m64", opcode: [0xFF], size: 4, reg: 6, regIsRegister: false, rm: memoryOperand(size: 8)) else {
                return false
            }
        default:
            code += [0x6A, UInt8(truncatingIfNeeded: interestingValue())]
            names.append("push imm8")
            return emit("pop m64", opcode: [0x8F], size: 4, reg: 0, regIsRegister: false, rm: memoryOperand(size: 8))
        }
        // Pop into a register half of the time; otherwise leave it on the stack (memory is compared).
        if chance(50) {
            let register = pick(Self.writable)
            code += (register >= 8 ? [0x41] : []) + [0x58 + (register & 7)]
            names.append("pop r64")
        }
        return true
    }

    mutating func flagsTransfer() -> Bool {
        switch next(4) {
        case 0:
            reads(allFlags)
            let register = pick(Self.writable)
            // pushfq; and qword [rsp], 0xCD5; pop r: keep the arithmetic flags and DF (the system
            // bits are the host's: kvm_pvm shows IF=1, IOPL=0 to CPL3), in the register and on the stack.
            code += [0x9C, 0x48, 0x81, 0x24, 0x24] + le32(0xCD5) + (register >= 8 ? [0x41] : []) + [0x58 + (register & 7)]
            names.append("pushfq; and [rsp],0xcd5; pop r")
            flagEffect(defines: allFlags & ~adjustFlag, undefines: adjustFlag)
        case 1:
            code += [0x68] + le32(UInt32(random.next() & allFlags) | 0x2) + [0x9D]
            names.append("push imm; popfq")
            flagEffect(defines: allFlags)
        case 2:
            code += [0x9E]
            names.append("sahf")
            flagEffect(defines: allFlags & ~overflowFlag)
        default:
            reads(allFlags & ~overflowFlag)
            code += [0x9F]
            names.append("lahf")
        }
        return true
    }

    mutating func convert() -> Bool {
        let forms: [([UInt8], String)] = [
            ([0x66, 0x98], "cbw"), ([0x98], "cwde"), ([0x48, 0x98], "cdqe"), ([0x66, 0x99], "cwd"), ([0x99], "cdq"),
            ([0x48, 0x99], "cqo"),
        ]
        let (bytes, name) = pick(forms)
        code += bytes
        names.append(name)
        return true
    }

    mutating func skippedMarker() -> [UInt8] {
        let register = pick(Self.writable)
        return [0x48 | (register >= 8 ? 1 : 0), 0xB8 | (register & 7)] + le64(random.next())
    }

    mutating func branch() -> Bool {
        let condition = UInt8(next(16))
        let marker = skippedMarker()
        switch next(3) {
        case 0:
            reads(conditionFlags(condition))
            code += [0x70 + condition, UInt8(marker.count)] + marker
            names.append("jcc rel8")
        case 1:
            reads(conditionFlags(condition))
            code += [0x0F, 0x80 + condition] + le32(UInt32(marker.count)) + marker
            names.append("jcc rel32")
        default:
            code += [0xEB, UInt8(marker.count)] + marker
            names.append("jmp rel8")
        }
        return true
    }

    mutating func callReturn() -> Bool {
        guard pushes < 6 else { return false }
        if chance(50) {
            // call next; pop r: the pushed return address lands in a register.
            let register = pick(Self.writable)
            code += [0xE8, 0, 0, 0, 0] + (register >= 8 ? [0x41] : []) + [0x58 + (register & 7)]
            names.append("call rel32; pop r")
        } else {
            // call L; jmp M; L: ret; M:
            code += [0xE8, 2, 0, 0, 0, 0xEB, 1, 0xC3]
            names.append("call; jmp; ret")
        }
        return true
    }

    mutating func loop() -> Bool {
        let counter = UInt64(next(5))
        switch next(3) {
        case 0:
            // mov ecx, n; L: inc r; loop L (n = 0 runs 2^64 times: use at least 1)
            let register = pick(Self.writable.filter { $0 != 1 })
            code += [0xB9] + le32(UInt32(counter + 1))
            let increment: [UInt8] = [0x48 | (register >= 8 ? 1 : 0), 0xFF, 0xC0 | (register & 7)]
            code += increment + [0xE2, UInt8(truncatingIfNeeded: -(increment.count + 2))]
            names.append("mov ecx,n; inc r; loop")
            flagEffect(defines: allFlags & ~carryFlag)
        case 1:
            // loope/loopne around a compare: exits on the first mismatch/match or when rcx hits 0.
            let loopne = chance(50)
            code += [0xB9] + le32(UInt32(counter + 1))
            let body: [UInt8] = [0x48, 0x83, 0xC0, 0x01, 0x48, 0x39, 0xD0]  // add rax,1; cmp rax,rdx
            code += body + [loopne ? 0xE0 : 0xE1, UInt8(truncatingIfNeeded: -(body.count + 2))]
            names.append(loopne ? "loopne" : "loope")
            flagEffect(defines: allFlags)
        default:
            if chance(50) {
                code += [0xB9] + le32(UInt32(counter))
                names.append("mov ecx,n")
            }
            let marker = skippedMarker()
            code += [0xE3, UInt8(marker.count)] + marker
            names.append("jrcxz")
        }
        return true
    }

    mutating func conditional() -> Bool {
        let condition = UInt8(next(16))
        reads(conditionFlags(condition))
        if chance(50) {
            return emit(
                "set\(condition) r/m8", opcode: [0x0F, 0x90 + condition], size: 1, reg: 0, regIsRegister: false,
                rm: destinationOperand(size: 1))
        }
        let size = sizeChoice(allowByte: false)
        return emit(
            "cmov\(condition) r,r/m", opcode: [0x0F, 0x40 + condition], size: size, reg: destination(size: size),
            rm: anyOperand(size: size))
    }

    mutating func bitTest() -> Bool {
        let size = sizeChoice(allowByte: false)
        let kind = next(4)  // bt, bts, btr, btc
        let names = ["bt", "bts", "btr", "btc"]
        let target: Operand = kind == 0 ? anyOperand(size: size) : destinationOperand(size: size)
        let ok: Bool
        if chance(50) {
            ok = emit(
                "\(names[kind]) r/m,imm8", opcode: [0x0F, 0xBA], size: size, reg: UInt8(4 + kind), regIsRegister: false,
                rm: target,
                immediate: [UInt8(next(256))])
        } else {
            let offsetRegister = pick(Self.writable.filter { $0 != 0 })
            if target.isMemory {
                // A register bit offset reaches beyond the operand: keep it inside the data block.
                load(offsetRegister, UInt64(bitPattern: Int64(next(1024)) - 256))
            }
            ok = emit(
                "\(names[kind]) r/m,r", opcode: [0x0F, [0xA3, 0xAB, 0xB3, 0xBB][kind]], size: size, reg: offsetRegister,
                rm: target)
        }
        if ok { flagEffect(defines: carryFlag, undefines: overflowFlag | signFlag | adjustFlag | parityFlag) }
        return ok
    }

    mutating func bitScan() -> Bool {
        let size = sizeChoice(allowByte: false)
        let kind = next(5)  // bsf, bsr, tzcnt, lzcnt, popcnt
        var source: Operand = anyOperand(size: size)
        if kind < 2 {
            // bsf/bsr of zero leave the destination undefined: scan a register known to be nonzero.
            let register = pick(Self.writable)
            load(register, interestingValue() | (1 << UInt64(next(size * 8))))
            source = .register(register)
        }
        let opcode: [UInt8] = [[0x0F, 0xBC], [0x0F, 0xBD], [0x0F, 0xBC], [0x0F, 0xBD], [0x0F, 0xB8]][kind]
        let names = ["bsf", "bsr", "tzcnt", "lzcnt", "popcnt"]
        let ok = emit(
            names[kind], prefixes: kind >= 2 ? [0xF3] : [], opcode: opcode, size: size, reg: destination(size: size), rm: source)
        guard ok else { return false }
        switch kind {
        case 0, 1: flagEffect(defines: zeroFlag, undefines: carryFlag | overflowFlag | signFlag | adjustFlag | parityFlag)
        case 2, 3: flagEffect(defines: carryFlag | zeroFlag, undefines: overflowFlag | signFlag | adjustFlag | parityFlag)
        default: flagEffect(defines: allFlags)
        }
        return true
    }

    mutating func byteSwap() -> Bool {
        let register = pick(Self.writable)
        let wide = chance(50)
        let rex: UInt8 = (wide ? 0x48 : 0) | (register >= 8 ? 0x41 : 0)
        code += (rex != 0 ? [rex | 0x40] : []) + [0x0F, 0xC8 + (register & 7)]
        names.append(wide ? "bswap r64" : "bswap r32")
        return true
    }

    mutating func string() -> Bool {
        let size = sizeChoice()
        let kind = next(5)  // movs, cmps, stos, lods, scas
        let count = UInt32(next(9))
        let backwards = chance(25)
        // lea rsi, [rbx+d]; lea rdi, [rbx+d]; mov ecx, n
        code += [0x48, 0x8D, 0x73, UInt8(truncatingIfNeeded: next(128) - 64)]
        code += [0x48, 0x8D, 0x7B, UInt8(truncatingIfNeeded: next(128) - 64)]
        code += [0xB9] + le32(count)
        if backwards { code += [0xFD] }
        let repeated = chance(70)
        var prefix: [UInt8] = []
        if repeated { prefix = [(kind == 1 || kind == 4) && chance(50) ? 0xF2 : 0xF3] }
        let opcode: UInt8 = [0xA4, 0xA6, 0xAA, 0xAC, 0xAE][kind] + (size == 1 ? 0 : 1)
        code += prefix + (size == 2 ? [0x66] : []) + (size == 8 ? [0x48] : []) + [opcode]
        if backwards { code += [0xFC] }
        let names = ["movs", "cmps", "stos", "lods", "scas"]
        self.names.append(
            "lea rsi; lea rdi; mov ecx,\(count); \(backwards ? "std; " : "")\(repeated ? "rep " : "")\(names[kind])\(size * 8)\(backwards ? "; cld" : "")"
        )
        if (kind == 1 || kind == 4) && (!repeated || count > 0) { flagEffect(defines: allFlags) }
        return true
    }

    mutating func leave() -> Bool {
        // lea rbp, [rbx+d]; leave: rsp = rbp + 8, rbp = [rbp]
        code += [0x48, 0x8D, 0x6B, UInt8(truncatingIfNeeded: next(128) - 64), 0xC9]
        names.append("lea rbp,[rbx+d]; leave")
        pushes = 6  // the stack now sits in the data area: no more pushes
        return true
    }

    mutating func flagOperation() -> Bool {
        switch next(5) {
        case 0:
            code += [0xF8]
            names.append("clc")
            flagEffect(defines: carryFlag)
        case 1:
            code += [0xF9]
            names.append("stc")
            flagEffect(defines: carryFlag)
        case 2:
            reads(carryFlag)
            code += [0xF5]
            names.append("cmc")
        case 3:
            code += [0xFD]
            names.append("std")
        default:
            code += [0xFC]
            names.append("cld")
        }
        return true
    }

    mutating func nop() -> Bool {
        let forms: [[UInt8]] = [
            [0x90], [0x66, 0x90], [0x0F, 0x1F, 0x00], [0x0F, 0x1F, 0x40, 0x00], [0x0F, 0x1F, 0x44, 0x00, 0x00],
            [0x66, 0x0F, 0x1F, 0x44, 0x00, 0x00], [0x0F, 0x1F, 0x80, 0, 0, 0, 0], [0x66, 0x2E, 0x0F, 0x1F, 0x84, 0, 0, 0, 0, 0],
            [0xF3, 0x90], [0xF3, 0x0F, 0x1E, 0xFA], [0x0F, 0xAE, 0xE8],
        ]
        code += pick(forms)
        names.append("nop form")
        return true
    }

    mutating func locked() -> Bool {
        let size = sizeChoice()
        let target = memoryOperand(size: size)
        let ok: Bool
        switch next(6) {
        case 0:
            let kind = next(7)  // not cmp
            reads(kind == 2 || kind == 3 ? carryFlag : 0)
            ok = emit(
                "lock \(Self.aluNames[kind]) m,r", prefixes: [0xF0], opcode: [UInt8(kind * 8) + (size == 1 ? 0 : 1)], size: size,
                reg: source(size: size), rm: target)
            if ok { aluFlags(kind) }
        case 1:
            ok = emit(
                "lock xchg m,r", prefixes: [0xF0], opcode: [size == 1 ? 0x86 : 0x87], size: size, reg: destination(size: size),
                rm: target)
        case 2:
            ok = emit(
                "lock cmpxchg m,r", prefixes: [0xF0], opcode: [0x0F, size == 1 ? 0xB0 : 0xB1], size: size,
                reg: source(size: size), rm: target)
            if ok { flagEffect(defines: allFlags) }
        case 3:
            ok = emit(
                "lock xadd m,r", prefixes: [0xF0], opcode: [0x0F, size == 1 ? 0xC0 : 0xC1], size: size,
                reg: destination(size: size), rm: target)
            if ok { flagEffect(defines: allFlags) }
        case 4:
            ok = emit(
                "lock inc m", prefixes: [0xF0], opcode: [size == 1 ? 0xFE : 0xFF], size: size, reg: 0, regIsRegister: false,
                rm: target)
            if ok { flagEffect(defines: allFlags & ~carryFlag) }
        default:
            // lock on a register destination is #UD.
            ok = emit(
                "lock add r,r (#UD)", prefixes: [0xF0], opcode: [0x01], size: 4, reg: source(size: 4),
                rm: .register(destination(size: 4)))
        }
        return ok
    }

    mutating func fault() -> Bool {
        switch next(3) {
        case 0:
            code += [0x0F, 0x0B]
            names.append("ud2 (#UD)")
        case 1:
            code += [0x31, 0xC9, 0xF7, 0xF1]
            names.append("xor ecx,ecx; div ecx (#DE)")
        default:
            code += [0xF4]
            names.append("hlt at CPL3 (#GP)")
        }
        return true
    }
}
