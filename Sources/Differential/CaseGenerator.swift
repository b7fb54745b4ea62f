import Machine
import Results
import X86

/// Generates differential test cases: 1-4 random instructions from every implemented integer
/// opcode form (operand sizes, register and memory operands in seven addressing forms, immediates,
/// prefixes), random starting registers, flags and memory.
///
/// The generator tracks which arithmetic flags are architecturally undefined after each
/// instruction (e.g. AF after AND, SF/ZF/AF/PF after MUL, OF after a multi-bit shift): before an
/// instruction that reads a flag left undefined it emits `cmp rax, rcx` to define them, and the
/// case's `flagMask` leaves out whatever is still undefined at the end. Case `index` of seed `seed`
/// is always the same case, so any mismatch is reproducible from those two numbers.
///
/// Not generated, on purpose: cpuid (the emulator presents its own documented CPU model), rdtsc
/// (time), port I/O and syscall (they leave CPL3 / the harness), and bsf/bsr of a register holding
/// zero (destination architecturally undefined).
public struct DifferentialCaseGenerator {
    public let seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    /// Case `index`; it lives in slot `index % DifferentialHarness.maximumCases`, so any run of
    /// up to `maximumCases` consecutive cases fits in one test kernel.
    public func makeCase(index: Int) -> DifferentialCase {
        let slot = index % DifferentialHarness.maximumCases
        var builder = CaseBuilder(
            seed: seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15) ^ 0xD1F5_E7A1,
            codeAddress: DifferentialHarness.codeAddress(ofCase: slot),
            block: DifferentialHarness.dataAddress(ofCase: slot))
        var testCase = builder.build()
        testCase.slot = slot
        return testCase
    }

    public func makeCases(_ range: Range<Int>) -> [DifferentialCase] { range.map { makeCase(index: $0) } }
}

private let allFlags: UInt64 = 0x8D5
private let carryFlag: UInt64 = 0x1
private let parityFlag: UInt64 = 0x4
private let adjustFlag: UInt64 = 0x10
private let zeroFlag: UInt64 = 0x40
private let signFlag: UInt64 = 0x80
private let overflowFlag: UInt64 = 0x800

/// The flags a condition code reads.
private func conditionFlags(_ code: UInt8) -> UInt64 {
    switch code >> 1 {
    case 0: return overflowFlag
    case 1: return carryFlag
    case 2: return zeroFlag
    case 3: return carryFlag | zeroFlag
    case 4: return signFlag
    case 5: return parityFlag
    case 6: return signFlag | overflowFlag
    default: return zeroFlag | signFlag | overflowFlag
    }
}

private struct CaseBuilder {
    enum Operand {
        case register(UInt8)
        /// form: 0 [rbx+d8], 1 [rbx+d32], 2 [rbx+r13*s+d8], 3 [rip+d32], 4 [d32], 5 [ebx+d8] (67), 6 [rbx]
        case memory(form: Int, displacement: Int64, scale: UInt8, target: UInt64)
        var isMemory: Bool { if case .memory = self { return true } else { return false } }
    }

    var random: SplitMix64
    let codeAddress: UInt64
    let block: UInt64
    var code: [UInt8] = []
    var registers: [UInt64] = []
    var undefined: UInt64 = 0
    var names: [String] = []
    var rflags: UInt64 = 0x3002
    var pushes = 0

    /// Registers a case may write: not rsp, not rbx (memory base), not r13 (memory index).
    static let writable: [UInt8] = [0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15]
    /// Byte registers a case may write: the above, plus AH, CH, DH (encoded 16...18, no REX).
    static let writableBytes: [UInt8] = writable + [16, 17, 18]

    init(seed: UInt64, codeAddress: UInt64, block: UInt64) {
        random = SplitMix64(seed: seed)
        self.codeAddress = codeAddress
        self.block = block
    }

    mutating func next(_ bound: Int) -> Int { Int(random.next() % UInt64(bound)) }
    mutating func chance(_ percent: Int) -> Bool { next(100) < percent }
    mutating func pick<T>(_ values: [T]) -> T { values[next(values.count)] }

    mutating func interestingValue() -> UInt64 {
        switch next(4) {
        case 0: return UInt64(next(256))
        case 1:
            return pick([
                0, 1, ~0, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000,
                0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0xFFFF_FFFF_0000_0000,
            ])
        default: return random.next()
        }
    }

    mutating func build() -> DifferentialCase {
        registers = (0..<16).map { _ in interestingValue() }
        registers[3] = block + 256
        registers[4] = block + DifferentialHarness.dataSize - 64
        registers[13] = UInt64(next(8))
        rflags = 0x3002 | (random.next() & allFlags)
        var data = [UInt8](repeating: 0, count: Int(DifferentialHarness.dataSize))
        for index in data.indices { data[index] = UInt8(truncatingIfNeeded: random.next()) }
        let count = 1 + next(4)
        var emitted = 0
        var attempts = 0
        while emitted < count && attempts < 50 && code.count < 200 {
            attempts += 1
            let saved = (code, undefined, names, pushes)
            if generateOne() && code.count <= 200 {
                emitted += 1
            } else {
                (code, undefined, names, pushes) = saved
            }
        }
        // Terminator: call [returnSlot]; the pushed address marks where the case ended.
        code += [0xFF, 0x14, 0x25] + le32(UInt32(DifferentialHarness.returnSlot))
        return DifferentialCase(
            code: code, registers: registers, rflags: rflags, data: data, flagMask: (allFlags & ~undefined) | 0x400,
            description: names.joined(separator: "; "), slot: 0)
    }

    func le32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
    func le64(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
    func le16(_ value: UInt16) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }

    /// Emits `cmp rax, rcx` first if the next instruction reads flags that are undefined now.
    mutating func reads(_ flags: UInt64) {
        if flags & undefined != 0 {
            code += [0x48, 0x39, 0xC8]
            names.append("cmp rax,rcx")
            undefined = 0
        }
    }

    mutating func flagEffect(defines: UInt64, undefines: UInt64 = 0) {
        undefined = (undefined & ~(defines | undefines)) | undefines
    }

    mutating func memoryOperand(size: Int) -> Operand {
        let base = registers[3]
        let low = block + 64
        let high = block + 448 - UInt64(size)
        switch next(7) {
        case 0:
            let displacement = Int64(next(256)) - 128
            return .memory(form: 0, displacement: displacement, scale: 0, target: UInt64(Int64(base) + displacement))
        case 1:
            let target = low + UInt64(next(Int(high - low)))
            return .memory(form: 1, displacement: Int64(target) - Int64(base), scale: 0, target: target)
        case 2:
            let scale = UInt8(next(4))
            let displacement = Int64(next(128)) - 64
            let target = UInt64(Int64(base + (registers[13] << UInt64(scale))) + displacement)
            return .memory(form: 2, displacement: displacement, scale: scale, target: target)
        case 3:
            let target = low + UInt64(next(Int(high - low)))
            return .memory(form: 3, displacement: 0, scale: 0, target: target)
        case 4:
            let target = low + UInt64(next(Int(high - low)))
            return .memory(form: 4, displacement: Int64(target), scale: 0, target: target)
        case 5:
            let displacement = Int64(next(256)) - 128
            return .memory(form: 5, displacement: displacement, scale: 0, target: UInt64(Int64(base) + displacement))
        default:
            return .memory(form: 6, displacement: 0, scale: 0, target: base)
        }
    }

    /// Encodes and appends one instruction. `reg` is a register (when `regIsRegister`) or an
    /// opcode extension. Returns false when the operands cannot be encoded together (a high-byte
    /// register with a REX prefix).
    @discardableResult
    mutating func emit(
        _ name: String, prefixes: [UInt8] = [], opcode: [UInt8], size: Int, reg: UInt8, regIsRegister: Bool = true, rm: Operand,
        immediate: [UInt8] = [], byteOperands: Bool? = nil
    ) -> Bool {
        let bytesOp = byteOperands ?? (size == 1)
        var rex: UInt8 = size == 8 ? 0x48 : 0
        var forceREX = false
        var forbidREX = false
        func note(_ register: UInt8, isReg: Bool) -> UInt8 {
            if register >= 16 {
                forbidREX = true
                return register - 12
            }
            if bytesOp && (4...7).contains(register) { forceREX = true }
            if register >= 8 { rex |= isReg ? 0x44 : 0x41 }
            return register & 7
        }
        var regBits: UInt8 = reg & 7
        if regIsRegister { regBits = note(reg, isReg: true) }
        var modrm: [UInt8] = []
        var addressOverride = false
        var ripRelative = false
        switch rm {
        case .register(let register):
            let bits: UInt8
            if register >= 16 {
                forbidREX = true
                bits = register - 12
            } else {
                if bytesOp && (4...7).contains(register) { forceREX = true }
                if register >= 8 { rex |= 0x41 }
                bits = register & 7
            }
            modrm = [0xC0 | (regBits << 3) | bits]
        case .memory(let form, let displacement, let scale, _):
            switch form {
            case 0: modrm = [0x40 | (regBits << 3) | 3, UInt8(truncatingIfNeeded: displacement)]
            case 1: modrm = [0x80 | (regBits << 3) | 3] + le32(UInt32(truncatingIfNeeded: displacement))
            case 2:
                rex |= 0x42
                modrm = [0x44 | (regBits << 3), (scale << 6) | (5 << 3) | 3, UInt8(truncatingIfNeeded: displacement)]
            case 3:
                ripRelative = true
                modrm = [0x05 | (regBits << 3), 0, 0, 0, 0]
            case 4: modrm = [0x04 | (regBits << 3), 0x25] + le32(UInt32(truncatingIfNeeded: displacement))
            case 5:
                addressOverride = true
                modrm = [0x40 | (regBits << 3) | 3, UInt8(truncatingIfNeeded: displacement)]
            default: modrm = [0x00 | (regBits << 3) | 3]
            }
        }
        if forceREX { rex |= 0x40 }
        if rex != 0 && forbidREX { return false }
        var bytes = prefixes
        if size == 2 || (size == 8 && chance(5)) { bytes.append(0x66) }  // 66 with REX.W: REX.W wins
        if addressOverride { bytes.append(0x67) }
        if chance(4) { bytes.append(pick([0x2E, 0x3E, 0x26, 0x36])) }  // null segment prefixes in long mode
        if rex != 0 { bytes.append(rex) }
        bytes += opcode
        let modrmStart = bytes.count
        bytes += modrm
        bytes += immediate
        if ripRelative, case .memory(_, _, _, let target) = rm {
            let next = Int64(codeAddress) + Int64(code.count + bytes.count)
            let displacement = UInt32(truncatingIfNeeded: Int64(target) - next)
            for (offset, byte) in le32(displacement).enumerated() { bytes[modrmStart + 1 + offset] = byte }
        }
        code += bytes
        names.append(name)
        return true
    }

    func immediate(_ value: UInt64, size: Int) -> [UInt8] {
        Array(le64(value).prefix(size))
    }

    mutating func sizeChoice(allowByte: Bool = true) -> Int { allowByte ? pick([1, 2, 4, 8]) : pick([2, 4, 8]) }

    mutating func destination(size: Int) -> UInt8 { size == 1 ? pick(Self.writableBytes) : pick(Self.writable) }

    mutating func source(size: Int) -> UInt8 {
        size == 1 ? (chance(20) ? UInt8(16 + next(4)) : UInt8(next(16))) : UInt8(next(16))
    }

    /// A writable register or a memory operand.
    mutating func destinationOperand(size: Int, memoryPercent: Int = 40) -> Operand {
        chance(memoryPercent) ? memoryOperand(size: size) : .register(destination(size: size))
    }

    mutating func anyOperand(size: Int) -> Operand {
        chance(40) ? memoryOperand(size: size) : .register(source(size: size))
    }

    /// Sets a writable register to a value (mov r64, imm64).
    mutating func load(_ register: UInt8, _ value: UInt64) {
        code += [0x48 | (register >= 8 ? 1 : 0), 0xB8 | (register & 7)] + le64(value)
        names.append("mov r64,imm64")
    }

    mutating func generateOne() -> Bool {
        switch next(40) {
        case 0...5: return alu()
        case 6...7: return aluImmediate()
        case 8: return test()
        case 9: return unary()
        case 10: return multiplyOne()
        case 11: return divide()
        case 12: return multiplyTwo()
        case 13...14: return shift()
        case 15: return doubleShift()
        case 16...17: return move()
        case 18: return extend()
        case 19: return lea()
        case 20: return exchange()
        case 21: return stack()
        case 22: return flagsTransfer()
        case 23: return convert()
        case 24: return branch()
        case 25: return callReturn()
        case 26: return loop()
        case 27: return conditional()
        case 28: return bitTest()
        case 29: return bitScan()
        case 30: return byteSwap()
        case 31...32: return string()
        case 33: return leave()
        case 34: return flagOperation()
        case 35: return nop()
        case 36: return locked()
        case 37: return fault()
        default: return alu()
        }
    }

    // MARK: Templates

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
