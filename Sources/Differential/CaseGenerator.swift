import Machine
import Results
import X86

/// Generates differential test cases: 1-4 random instructions from every implemented integer
/// opcode form (operand sizes, register and memory operands in seven addressing forms, immediates,
/// prefixes), SSE/SSE2/SSE3 and x87 forms (FloatingPointTemplates.swift), random starting
/// registers, flags and memory.
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

}

let allFlags: UInt64 = 0x8D5
let carryFlag: UInt64 = 0x1
let parityFlag: UInt64 = 0x4
let adjustFlag: UInt64 = 0x10
let zeroFlag: UInt64 = 0x40
let signFlag: UInt64 = 0x80
let overflowFlag: UInt64 = 0x800

/// The flags a condition code reads.
func conditionFlags(_ code: UInt8) -> UInt64 {
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

struct CaseBuilder {
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
        switch next(44) {
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
        case 38...41: return sse()
        case 42...43: return x87()
        default: return alu()
        }
    }

}
