extension BlockTranslator {
    /// Host code for one translatable instruction that is not a branch: the guest's operands are
    /// loaded into rax and rdx, the same operation runs on them, and the result is stored back.
    static func emit(_ instruction: Instruction, into assembler: inout HostAssembler) {
        let size = instruction.size
        let reg = instruction.reg
        let rm = instruction.rm
        let kind = instruction.sub
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
            let unary: [Op: UInt8] = [.incRm: 0, .decRm: 1, .notRm: 2, .negRm: 3]
            assembler.load(.rax, guest: rm, size: size)
            assembler.unary(unary[instruction.op]!, size: size, .rax)
            assembler.store(.rax, guest: rm, size: size)
        case .shiftImm:
            assembler.load(.rax, guest: rm, size: size)
            assembler.shift(kind, size: size, .rax, count: UInt8(truncatingIfNeeded: instruction.immediate))
            assembler.store(.rax, guest: rm, size: size)
        case .shiftCL:
            // rcx is the pass counter: parked in r9 while CL holds the guest's count.
            assembler.load(.rax, guest: rm, size: size)
            assembler.move(size: 8, .r9, .rcx)
            assembler.load(.rcx, guest: 1, size: 1)
            assembler.shiftByCL(kind, size: size, .rax)
            assembler.move(size: 8, .rcx, .r9)
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
        case .lea:
            emitAddress(instruction, into: &assembler)
            if size == 4 || instruction.addressSize == 4 { assembler.move(size: 4, .rax, .rax) }
            assembler.store(.rax, guest: reg, size: size)
        default:  // nop, pause
            break
        }
    }

    /// rax = base + index << scale + displacement (what `lea` computes), with flag-free
    /// instructions only.
    private static func emitAddress(_ instruction: Instruction, into assembler: inout HostAssembler) {
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
}
