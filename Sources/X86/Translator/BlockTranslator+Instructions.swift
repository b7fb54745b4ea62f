extension BlockTranslator {
    /// Host code for one translatable instruction that is not a branch: the guest's operands are
    /// loaded into rax and rdx, the same operation runs on them, and the result is stored back.
    static func emit(_ instruction: Instruction, into assembler: inout HostAssembler) {
        let size = instruction.size
        let reg = instruction.reg
        let rm = instruction.rm
        let kind = instruction.sub
        if emitOnCachedRegisters(instruction, into: &assembler) { return }
        switch instruction.op {
        case .movRegRm:
            assembler.load(.rax, guest: rm, size: size)
            assembler.store(.rax, guest: reg, size: size)
        case .movRmReg:
            assembler.load(.rax, guest: reg, size: size)
            assembler.store(.rax, guest: rm, size: size)
        case .movRmImm:
            assembler.move(.rax, immediate: size == 4 ? instruction.immediate & 0xFFFF_FFFF : instruction.immediate)
            assembler.store(.rax, guest: rm, size: size)
        case .aluRmReg, .aluRegRm:
            let (destination, source) = instruction.op == .aluRmReg ? (rm, reg) : (reg, rm)
            assembler.load(.rax, guest: destination, size: size)
            assembler.load(.rdx, guest: source, size: size)
            assembler.alu(kind, size: size, .rax, .rdx)
            if kind != 7 { assembler.store(.rax, guest: destination, size: size) }
        case .aluRmImm:
            assembler.load(.rax, guest: rm, size: size)
            assembler.alu(kind, size: size, .rax, immediate: instruction.immediate)
            if kind != 7 { assembler.store(.rax, guest: rm, size: size) }
        case .testRmReg:
            assembler.load(.rax, guest: rm, size: size)
            assembler.load(.rdx, guest: reg, size: size)
            assembler.test(size: size, .rax, .rdx)
        case .testRmImm:
            assembler.load(.rax, guest: rm, size: size)
            assembler.test(size: size, .rax, immediate: instruction.immediate)
        case .incRm, .decRm, .notRm, .negRm:
            assembler.load(.rax, guest: rm, size: size)
            assembler.unary(unaryKind(instruction.op), size: size, .rax)
            assembler.store(.rax, guest: rm, size: size)
        case .shiftImm:
            assembler.load(.rax, guest: rm, size: size)
            assembler.shift(kind, size: size, .rax, count: UInt8(truncatingIfNeeded: instruction.immediate))
            assembler.store(.rax, guest: rm, size: size)
        case .shiftCL:
            assembler.load(.rax, guest: rm, size: size)
            assembler.load(.rcx, guest: 1, size: 1)
            assembler.shiftByCL(kind, size: size, .rax)
            assembler.store(.rax, guest: rm, size: size)
        case .imulRegRm:
            assembler.load(.rax, guest: reg, size: size)
            assembler.load(.rdx, guest: rm, size: size)
            assembler.multiply(size: size, .rax, .rdx)
            assembler.store(.rax, guest: reg, size: size)
        case .imulRegRmImm:
            assembler.load(.rdx, guest: rm, size: size)
            assembler.multiply(size: size, .rax, .rdx, immediate: instruction.immediate)
            assembler.store(.rax, guest: reg, size: size)
        case .movzx, .movsx:
            assembler.load(.rdx, guest: rm, size: instruction.size2)
            assembler.extend(
                signed: instruction.op == .movsx, size: size, .rax, .rdx, sourceSize: instruction.size2)
            assembler.store(.rax, guest: reg, size: size)
        case .cmovcc:
            assembler.load(.rax, guest: reg, size: size)
            assembler.load(.rdx, guest: rm, size: size)
            assembler.conditionalMove(kind, size: size, .rax, .rdx)
            assembler.store(.rax, guest: reg, size: size)
        case .setcc:
            assembler.setByte(kind, .rax)
            assembler.store(.rax, guest: rm, size: 1)
        case .xchgRmReg:
            assembler.load(.rax, guest: rm, size: size)
            assembler.load(.rdx, guest: reg, size: size)
            assembler.store(.rax, guest: reg, size: size)
            assembler.store(.rdx, guest: rm, size: size)
        case .bswap:
            emitByteSwap(instruction, into: &assembler)
        case .lea:
            emitAddress(instruction, into: &assembler)
            if size == 4 || instruction.addressSize == 4 { assembler.move(size: 4, .rax, .rax) }
            assembler.store(.rax, guest: reg, size: size)
        default:  // nop, pause
            break
        }
    }

    /// inc (0), dec (1), not (2), neg (3): the assembler's `unary` kinds.
    private static func unaryKind(_ op: Op) -> UInt8 {
        switch op {
        case .incRm: return 0
        case .decRm: return 1
        case .notRm: return 2
        default: return 3
        }
    }

    /// The common register-only forms when every guest register they name is cached in a host
    /// register: one host instruction on those registers, no loads or stores through rax and
    /// rdx. Returns false (nothing emitted) otherwise.
    private static func emitOnCachedRegisters(_ instruction: Instruction, into assembler: inout HostAssembler) -> Bool {
        let size = instruction.size
        guard instruction.isRegister, size >= 4 else { return false }
        let reg = assembler.cached(instruction.reg, size: size)
        guard let rm = assembler.cached(instruction.rm, size: size) else { return false }
        switch instruction.op {
        case .movRegRm:
            guard let reg else { return false }
            assembler.move(size: size, reg, rm)
        case .movRmReg:
            guard let reg else { return false }
            assembler.move(size: size, rm, reg)
        case .aluRmReg:
            guard let reg else { return false }
            assembler.alu(instruction.sub, size: size, rm, reg)
        case .aluRegRm:
            guard let reg else { return false }
            assembler.alu(instruction.sub, size: size, reg, rm)
        case .aluRmImm:
            assembler.alu(instruction.sub, size: size, rm, immediate: instruction.immediate)
        case .testRmReg:
            guard let reg else { return false }
            assembler.test(size: size, rm, reg)
        case .testRmImm:
            assembler.test(size: size, rm, immediate: instruction.immediate)
        case .incRm, .decRm, .notRm, .negRm:
            assembler.unary(unaryKind(instruction.op), size: size, rm)
        case .shiftImm:
            assembler.shift(
                instruction.sub, size: size, rm, count: UInt8(truncatingIfNeeded: instruction.immediate))
        case .imulRegRm:
            guard let reg else { return false }
            assembler.multiply(size: size, reg, rm)
        default:
            return false
        }
        return true
    }

    /// rax = base + index << scale + displacement (what `lea` computes), with flag-free
    /// instructions only.
    static func emitAddress(_ instruction: Instruction, into assembler: inout HostAssembler) {
        if instruction.rm != 0xFF {
            assembler.load(.rax, guest: instruction.rm, size: 8)
        } else {
            assembler.move(.rax, immediate: 0)
        }
        if instruction.index != 0xFF {
            assembler.load(.rdx, guest: instruction.index, size: 8)
        } else {
            assembler.move(.rdx, immediate: 0)
        }
        let displacement = instruction.displacement
        if fitsInt32(displacement) {
            assembler.loadAddress(
                .rax, base: .rax, index: .rdx, scale: instruction.scale, displacement: Int32(truncatingIfNeeded: displacement))
        } else {
            assembler.move(.r9, immediate: displacement)
            assembler.loadAddress(.rax, base: .rax, index: .rdx, scale: instruction.scale, displacement: 0)
            assembler.loadAddress(.rax, base: .rax, index: .r9, scale: 0, displacement: 0)
        }
    }

    /// r11 = the linear address of the ModRM memory operand: what `lea` computes, plus the FS
    /// or GS base (thread and per-CPU data; other overrides are not translated, `translatable`).
    static func emitLinearAddress(_ instruction: Instruction, into assembler: inout HostAssembler) {
        emitAddress(instruction, into: &assembler)
        if instruction.segment == 4 || instruction.segment == 5 { assembler.addSegmentBase(instruction.segment) }
        assembler.move(size: 8, .r11, .rax)
    }

    /// Host code for an instruction whose ModRM operand is memory: the address into r11, the
    /// TLB check (a miss calls `miss` with the jump to patch), then the operation on [r10 + r11].
    static func emitWithMemory(
        _ instruction: Instruction, user: Bool, into assembler: inout HostAssembler, miss: (Int) -> Void
    ) {
        let size = instruction.size
        let reg = instruction.reg
        let kind = instruction.sub
        emitLinearAddress(instruction, into: &assembler)
        func check(write: Bool, size: UInt8) { miss(assembler.checkTLB(write: write, size: size, user: user)) }
        switch instruction.op {
        case .movRegRm:
            check(write: false, size: size)
            assembler.loadGuestMemory(.rax, size: size)
            assembler.store(.rax, guest: reg, size: size)
        case .movRmReg:
            check(write: true, size: size)
            assembler.load(.rax, guest: reg, size: size)
            assembler.storeGuestMemory(.rax, size: size)
        case .movRmImm:
            check(write: true, size: size)
            assembler.move(.rax, immediate: instruction.immediate)
            assembler.storeGuestMemory(.rax, size: size)
        case .aluRegRm, .imulRegRm, .cmovcc:
            check(write: false, size: size)
            assembler.loadGuestMemory(.rdx, size: size)
            assembler.load(.rax, guest: reg, size: size)
            switch instruction.op {
            case .aluRegRm: assembler.alu(kind, size: size, .rax, .rdx)
            case .imulRegRm: assembler.multiply(size: size, .rax, .rdx)
            default: assembler.conditionalMove(kind, size: size, .rax, .rdx)
            }
            if instruction.op != .aluRegRm || kind != 7 { assembler.store(.rax, guest: reg, size: size) }
        case .aluRmReg, .aluRmImm:
            let compareOnly = kind == 7
            check(write: !compareOnly, size: size)
            assembler.loadGuestMemory(.rax, size: size)
            if instruction.op == .aluRmReg {
                assembler.load(.rdx, guest: reg, size: size)
                assembler.alu(kind, size: size, .rax, .rdx)
            } else {
                assembler.alu(kind, size: size, .rax, immediate: instruction.immediate)
            }
            if !compareOnly { assembler.storeGuestMemory(.rax, size: size) }
        case .shiftImm:
            // A read-modify-write (a count of 0 writes the same value back to a page the write
            // tag already allows; rcl and rcr take CF from the guest's flags in RFLAGS).
            check(write: true, size: size)
            assembler.loadGuestMemory(.rax, size: size)
            assembler.shift(kind, size: size, .rax, count: UInt8(truncatingIfNeeded: instruction.immediate))
            assembler.storeGuestMemory(.rax, size: size)
        case .testRmReg:
            check(write: false, size: size)
            assembler.loadGuestMemory(.rax, size: size)
            assembler.load(.rdx, guest: reg, size: size)
            assembler.test(size: size, .rax, .rdx)
        case .testRmImm:
            check(write: false, size: size)
            assembler.loadGuestMemory(.rax, size: size)
            assembler.test(size: size, .rax, immediate: instruction.immediate)
        case .incRm, .decRm, .notRm, .negRm:
            let unary: [Op: UInt8] = [.incRm: 0, .decRm: 1, .notRm: 2, .negRm: 3]
            check(write: true, size: size)
            assembler.loadGuestMemory(.rax, size: size)
            assembler.unary(unary[instruction.op]!, size: size, .rax)
            assembler.storeGuestMemory(.rax, size: size)
        case .movzx, .movsx:
            let sourceSize = instruction.size2
            check(write: false, size: sourceSize)
            assembler.loadGuestMemory(.rdx, size: sourceSize)
            assembler.extend(signed: instruction.op == .movsx, size: size, .rax, .rdx, sourceSize: sourceSize)
            assembler.store(.rax, guest: reg, size: size)
        default:
            preconditionFailure("\(instruction.op) has no translated memory form")
        }
    }

    /// `push` of 8 bytes: a register's value (read before RSP changes) or a constant.
    static func emitPush(
        register: UInt8? = nil, immediate: UInt64 = 0, user: Bool, into assembler: inout HostAssembler,
        miss: (Int) -> Void
    ) {
        assembler.load(.rdx, guest: 4, size: 8)
        assembler.loadAddress(.r11, base: .rdx, displacement: -8)
        miss(assembler.checkTLB(write: true, size: 8, user: user))
        if let register {
            assembler.load(.rax, guest: register, size: 8)
        } else {
            assembler.move(.rax, immediate: immediate)
        }
        assembler.storeGuestMemory(.rax, size: 8)
        assembler.loadAddress(.rdx, base: .rdx, displacement: -8)
        assembler.store(.rdx, guest: 4, size: 8)
    }

    /// `leave` (8 bytes): a pop through RBP into RBP (RSP = the old RBP + 8). The load comes
    /// first, so a miss leaves before the instruction with RSP and RBP untouched, as the
    /// interpreter's fault does.
    static func emitLeave(user: Bool, into assembler: inout HostAssembler, miss: (Int) -> Void) {
        emitPop(through: 5, user: user, into: &assembler, miss: miss)
        assembler.store(.rax, guest: 5, size: 8)
    }

    /// `pop` of 8 bytes into rax from the stack top in guest register `stackTop` (RSP, or RBP
    /// for `leave`); RSP = that top + 8 afterwards.
    static func emitPop(
        through stackTop: UInt8 = 4, user: Bool, into assembler: inout HostAssembler, miss: (Int) -> Void
    ) {
        assembler.load(.rdx, guest: stackTop, size: 8)
        assembler.move(size: 8, .r11, .rdx)
        miss(assembler.checkTLB(write: false, size: 8, user: user))
        assembler.loadGuestMemory(.rax, size: 8)
        assembler.loadAddress(.rdx, base: .rdx, displacement: 8)
        assembler.store(.rdx, guest: 4, size: 8)
    }
}
