/// Just enough of an x86-64 assembler to write the differential-test harness kernel: 64-bit
/// moves between registers and absolute or base+disp32 memory, a few stack and control-flow
/// instructions, and labels. Registers are numbered as in the ISA (rax = 0 ... r15 = 15).
public struct MiniAssembler {
    public private(set) var bytes: [UInt8] = []
    public let origin: UInt64
    private var labels: [String: UInt64] = [:]
    private var fixups: [(offset: Int, label: String)] = []

    public init(origin: UInt64) { self.origin = origin }

    public var here: UInt64 { origin + UInt64(bytes.count) }

    public mutating func emit(_ values: UInt8...) { bytes += values }
    public mutating func emit(_ values: [UInt8]) { bytes += values }
    public mutating func u16(_ value: UInt16) { bytes += withUnsafeBytes(of: value.littleEndian, Array.init) }
    public mutating func u32(_ value: UInt32) { bytes += withUnsafeBytes(of: value.littleEndian, Array.init) }

    public mutating func label(_ name: String) { labels[name] = here }
    public func address(of name: String) -> UInt64? { labels[name] }

    /// A rel32 to `name`, resolved by `finish()`.
    private mutating func relative(_ name: String) {
        fixups.append((bytes.count, name))
        u32(0)
    }

    /// Resolves label references; returns the code.
    public mutating func finish() -> [UInt8] {
        for fixup in fixups {
            guard let target = labels[fixup.label] else { preconditionFailure("undefined label \(fixup.label)") }
            let next = Int64(origin) + Int64(fixup.offset) + 4
            let value = UInt32(truncatingIfNeeded: Int64(target) - next)
            withUnsafeBytes(of: value.littleEndian) { raw in
                for index in 0..<4 { bytes[fixup.offset + index] = raw[index] }
            }
        }
        fixups.removeAll()
        return bytes
    }

    private mutating func rexW(reg: UInt8, base: UInt8 = 0) {
        emit(0x48 | (reg >= 8 ? 4 : 0) | (base >= 8 ? 1 : 0))
    }

    /// ModRM for [disp32] with no base (SIB form, valid in 64-bit mode).
    private mutating func absolute(reg: UInt8, _ address: UInt32) {
        emit(0x04 | ((reg & 7) << 3), 0x25)
        u32(address)
    }

    /// ModRM for [base + disp32].
    private mutating func based(reg: UInt8, base: UInt8, _ displacement: Int32) {
        emit(0x80 | ((reg & 7) << 3) | (base & 7))
        if base & 7 == 4 { emit(0x24) }
        u32(UInt32(bitPattern: displacement))
    }

    public mutating func load(_ register: UInt8, absolute address: UInt32) {
        rexW(reg: register)
        emit(0x8B)
        absolute(reg: register, address)
    }

    public mutating func store(absolute address: UInt32, _ register: UInt8) {
        rexW(reg: register)
        emit(0x89)
        absolute(reg: register, address)
    }

    public mutating func load(_ register: UInt8, base: UInt8, _ displacement: Int32) {
        rexW(reg: register, base: base)
        emit(0x8B)
        based(reg: register, base: base, displacement)
    }

    public mutating func store(base: UInt8, _ displacement: Int32, _ register: UInt8) {
        rexW(reg: register, base: base)
        emit(0x89)
        based(reg: register, base: base, displacement)
    }

    /// mov qword [base + disp32], imm32 (sign-extended).
    public mutating func storeImmediate(base: UInt8, _ displacement: Int32, _ value: Int32) {
        rexW(reg: 0, base: base)
        emit(0xC7)
        based(reg: 0, base: base, displacement)
        u32(UInt32(bitPattern: value))
    }

    /// mov r64, imm32 (sign-extended).
    public mutating func move(_ register: UInt8, immediate value: Int32) {
        rexW(reg: 0, base: register)
        emit(0xC7, 0xC0 | (register & 7))
        u32(UInt32(bitPattern: value))
    }

    public mutating func compare(_ register: UInt8, absolute address: UInt32) {
        rexW(reg: register)
        emit(0x3B)
        absolute(reg: register, address)
    }

    /// imul dst, src, imm32.
    public mutating func multiply(_ destination: UInt8, _ source: UInt8, immediate value: Int32) {
        rexW(reg: destination, base: source)
        emit(0x69, 0xC0 | ((destination & 7) << 3) | (source & 7))
        u32(UInt32(bitPattern: value))
    }

    public mutating func add(_ register: UInt8, immediate value: Int32) {
        rexW(reg: 0, base: register)
        emit(0x81, 0xC0 | (register & 7))
        u32(UInt32(bitPattern: value))
    }

    public mutating func incrementQword(absolute address: UInt32) {
        emit(0x48, 0xFF)
        absolute(reg: 0, address)
    }

    public mutating func push(base: UInt8, _ displacement: Int32) {
        if base >= 8 { emit(0x41) }
        emit(0xFF)
        based(reg: 6, base: base, displacement)
    }

    public mutating func push(immediate value: Int32) {
        emit(0x68)
        u32(UInt32(bitPattern: value))
    }

    public mutating func pop(_ register: UInt8) {
        if register >= 8 { emit(0x41) }
        emit(0x58 | (register & 7))
    }

    public mutating func jump(absoluteIndirect address: UInt32) {
        emit(0xFF)
        absolute(reg: 4, address)
    }

    public mutating func call(absoluteIndirect address: UInt32) {
        emit(0xFF)
        absolute(reg: 2, address)
    }

    public mutating func jump(_ label: String) {
        emit(0xE9)
        relative(label)
    }

    public mutating func jumpIfAboveOrEqual(_ label: String) {
        emit(0x0F, 0x83)
        relative(label)
    }
}
