/// `div` and `idiv` of 32 and 64 bits, and `bswap`, in translated blocks.
///
/// The host's divide runs on the guest's values, so quotient, remainder and the (undefined)
/// flags are the host CPU's, as under KVM. A divide that would raise #DE on the host (and kill
/// hvbench with SIGFPE) must never run: flag-free checks before it leave the block before the
/// instruction, and the interpreter raises the guest's #DE. They leave for more than #DE too, so
/// the checks stay simple: a zero divisor; for `div` a high half (EDX/RDX) that is not zero; for
/// `idiv` a divisor of -1 or a high half that is not the low half's sign (the `cdq`/`cqo` form
/// compilers emit). What remains cannot overflow.
extension BlockTranslator {
    static func emitDivide(
        _ instruction: Instruction, user: Bool, into assembler: inout HostAssembler, miss: (Int) -> Void
    ) {
        let size = instruction.size
        let signed = instruction.op == .idivRm
        // The checks use r13 (the TLB check's scratch), so the block must not cache a guest
        // register there: it counts as touching guest memory.
        assembler.usesGuestMemory = true
        if instruction.isRegister {
            assembler.load(.r9, guest: instruction.rm, size: size)
        } else {
            emitLinearAddress(instruction, into: &assembler)
            miss(assembler.checkTLB(write: false, size: size, user: user))
            assembler.loadGuestMemory(.r9, size: size)
        }
        assembler.loadAddress(.rcx, base: .r9, displacement: 0)
        miss(assembler.jumpIfRCXZeroFar())  // divisor 0
        if signed {
            assembler.loadAddress(.rcx, base: .r9, displacement: 1)
            if size == 4 { assembler.keepLow32(.rcx) }
            miss(assembler.jumpIfRCXZeroFar())  // divisor -1
        }
        assembler.load(.rdx, guest: 2, size: size)
        assembler.load(.rax, guest: 0, size: size)
        if signed {
            // r13 = the sign of the low half, as wide as the high half; rcx = high - r13.
            assembler.signOfLowHalf(.r13, size: size)
            assembler.complement(.r13)
            assembler.loadAddress(.rcx, base: .rdx, index: .r13, scale: 0, displacement: 1)
        } else {
            assembler.loadAddress(.rcx, base: .rdx, displacement: 0)
        }
        miss(assembler.jumpUnlessRCXZero())
        assembler.divide(signed: signed, size: size, by: .r9)
        assembler.store(.rax, guest: 0, size: size)
        assembler.store(.rdx, guest: 2, size: size)
    }

    /// `bswap` of a 32- or 64-bit register.
    static func emitByteSwap(_ instruction: Instruction, into assembler: inout HostAssembler) {
        assembler.load(.rax, guest: instruction.reg, size: instruction.size)
        assembler.byteSwap(.rax, size: instruction.size)
        assembler.store(.rax, guest: instruction.reg, size: instruction.size)
    }
}

extension HostAssembler {
    /// Leaves (returns the rel32 field of the jump) when rcx is zero: `jrcxz` to a `jmp` that a
    /// short jump steps over. Flag-free.
    mutating func jumpIfRCXZeroFar() -> Int {
        emit(0xE3, 0x02, 0xEB, 0x05)  // jrcxz +2; jmp short +5
        return jump()
    }

    /// `mov r32, r32`: the upper half cleared (flags untouched).
    mutating func keepLow32(_ register: Register) {
        registerForm(size: 4, opcode: Opcode(0x89), reg: register.rawValue, rm: register)
    }

    /// `destination` = 0 or all ones (of `size` bytes, zero-extended): the sign of the guest's
    /// low half in rax, through BMI2's flag-free `sarx` (rcx is the count).
    mutating func signOfLowHalf(_ destination: Register, size: UInt8) {
        if size == 4 {
            // movsxd destination, eax
            emit(0x48 | (destination.rawValue & 8 != 0 ? 4 : 0), 0x63, 0xC0 | (destination.rawValue & 7) << 3)
        } else {
            move(size: 8, destination, .rax)
        }
        loadShiftCount(63)
        arithmeticShiftRight(destination, count: .rcx)
        if size == 4 { keepLow32(destination) }
    }

    /// `sarx register, register, count` (64 bits, flags untouched).
    mutating func arithmeticShiftRight(_ register: Register, count: Register) {
        let r = register.rawValue
        let first: UInt8 = (r & 8 == 0 ? 0x80 : 0) | 0x40 | (r & 8 == 0 ? 0x20 : 0) | 0x02
        let second: UInt8 = 0x80 | ((~count.rawValue & 15) << 3) | 0x02  // W1, vvvv = count, F3
        emit(0xC4, first, second, 0xF7, 0xC0 | (r & 7) << 3 | (r & 7))
    }

    /// `div` / `idiv` of rdx:rax (edx:eax) by `divisor`.
    mutating func divide(signed: Bool, size: UInt8, by divisor: Register) {
        registerForm(size: size, opcode: Opcode(0xF7), reg: signed ? 7 : 6, rm: divisor)
    }

    /// `bswap register` (32 or 64 bits).
    mutating func byteSwap(_ register: Register, size: UInt8) {
        prefixes(size: size, rm: register.rawValue)
        emit(0x0F, 0xC8 | (register.rawValue & 7))
    }
}
