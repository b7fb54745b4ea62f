/// Locked read-modify-writes on guest memory in translated blocks: `lock` add/or/adc/sbb/and/
/// sub/xor, inc/dec/not/neg, and xchg, cmpxchg and xadd (with or without `lock`).
///
/// Each runs as the same host instruction, `lock`ed where the guest's is (xchg with memory
/// always is), directly on the guest's RAM at [r10 + r11] after the write check of the TLB: the
/// access is then as atomic towards other vCPU threads as the guest's is towards other CPUs,
/// and the flags are the host CPU's. A miss (a page not writable yet, MMIO, a page holding
/// code) leaves before the instruction, and the interpreter's locked access runs it.
extension BlockTranslator {
    /// Whether `instruction` is one of these with a memory destination.
    static func isAtomicReadModifyWrite(_ instruction: Instruction) -> Bool {
        guard !instruction.isRegister else { return false }
        switch instruction.op {
        case .xchgRmReg, .cmpxchg, .xadd: return true
        case .aluRmReg, .aluRmImm: return instruction.locked && instruction.sub != 7
        case .incRm, .decRm, .notRm, .negRm: return instruction.locked
        default: return false
        }
    }

    static func emitAtomic(
        _ instruction: Instruction, user: Bool, into assembler: inout HostAssembler, miss: (Int) -> Void
    ) {
        let size = instruction.size
        let reg = instruction.reg
        let locked = instruction.locked || instruction.op == .xchgRmReg
        emitLinearAddress(instruction, into: &assembler)
        miss(assembler.checkTLB(write: true, size: size, user: user))
        let wide: UInt8 = size == 1 ? 0 : 1
        switch instruction.op {
        case .aluRmReg:
            assembler.load(.rdx, guest: reg, size: size)
            assembler.onGuestMemory(locked: locked, size: size, opcode: .init(instruction.sub << 3 | wide), reg: 2)
        case .aluRmImm:
            assembler.onGuestMemory(locked: locked, size: size, opcode: .init(0x80 | wide), reg: instruction.sub)
            assembler.immediateBytes(instruction.immediate, size: size)
        case .incRm, .decRm:
            assembler.onGuestMemory(
                locked: locked, size: size, opcode: .init(0xFE | wide), reg: instruction.op == .incRm ? 0 : 1)
        case .notRm, .negRm:
            assembler.onGuestMemory(
                locked: locked, size: size, opcode: .init(0xF6 | wide), reg: instruction.op == .notRm ? 2 : 3)
        case .xchgRmReg, .xadd:
            assembler.load(.rdx, guest: reg, size: size)
            let opcode: HostAssembler.Opcode = instruction.op == .xchgRmReg ? .init(0x86 | wide) : .init(0x0F, 0xC0 | wide)
            assembler.onGuestMemory(locked: locked, size: size, opcode: opcode, reg: 2)
            assembler.store(.rdx, guest: reg, size: size)
        default:  // cmpxchg
            // The whole of RAX in and out: the host instruction leaves it alone on success and
            // writes AL, AX, EAX (zero-extended) or RAX on failure, as the guest's does.
            assembler.load(.rdx, guest: reg, size: size)
            assembler.load(.rax, guest: 0, size: 8)
            assembler.onGuestMemory(locked: locked, size: size, opcode: .init(0x0F, 0xB0 | wide), reg: 2)
            assembler.store(.rax, guest: 0, size: 8)
        }
    }
}

extension HostAssembler {
    /// `[lock] opcode [r10 + r11]` with ModRM reg field `reg` (a register or an opcode extension).
    mutating func onGuestMemory(locked: Bool, size: UInt8, opcode: Opcode, reg: UInt8) {
        if locked { bytes.append(0xF0) }
        if size == 2 { bytes.append(0x66) }
        bytes.append(0x43 | (size == 8 ? 0x08 : 0) | (reg & 8 != 0 ? 0x04 : 0))  // X: r11, B: r10
        emit(opcode)
        emit(0x04 | (reg & 7) << 3, 0x1A)  // SIB: index r11, base r10, scale 1
    }
}
