/// Turns a run of decoded guest instructions into host code.
///
/// A block is a straight run of 64-bit-mode instructions that touch only registers and flags
/// (so nothing in it can fault, exit to the VMM or be interrupted half-way), ended by a jmp or
/// jcc to a known target, or by the first instruction it does not translate, which the
/// interpreter then executes. Each guest instruction becomes the same host instruction on the
/// guest's register values, so results and all six arithmetic flags (the undefined ones too)
/// are the host CPU's, as under KVM. The guest's flags live in the host's RFLAGS for the whole
/// block and are saved at its end.
///
/// A block whose branch leads back to its own start loops inside the host code, up to a pass
/// limit the caller gives (its instruction budget, and how long it may run between checks for
/// interrupts and stop requests).
///
/// The function's contract (System V): rdi = the guest registers, rsi = two words, [rsi] the
/// guest's RFLAGS in and out and [rsi + 8] the pass limit in and the passes left out; it returns
/// the next guest RIP. Passes run = limit - left; each retires `instructionCount` instructions.
struct BlockTranslator {
    /// Instructions per block at most (the rest goes into the next block).
    static let maximumInstructions = 64

    struct Block {
        var code: [UInt8]
        var instructionCount: Int
        /// Linear pages its instructions came from (invlpg of one invalidates it).
        var linearPages: [UInt64]
    }

    /// Host code for the guest instructions starting with `first` at `start`, or nil if `first` is
    /// not one the translator handles. `next` decodes the instruction at an address, or returns
    /// nil where decoding would fault (the block ends before it).
    static func translate(
        start: UInt64, first: Instruction, next: (UInt64) -> Instruction?
    ) -> Block? {
        guard translatable(first) else { return nil }
        var assembler = HostAssembler()
        assembler.loadPassLimit()
        assembler.loadArithmeticFlags()
        let body = assembler.position
        assembler.countPass()
        var exits: [(field: Int, target: UInt64)] = []
        var loops: [Int] = []
        var instruction = first
        var count = 0
        var pages: Set<UInt64> = [start >> 12]
        var rip = start
        while true {
            count += 1
            let after = rip &+ UInt64(instruction.length)
            pages.insert((after &- 1) >> 12)
            switch instruction.op {
            case .jmp:
                if instruction.immediate == start { loops.append(assembler.position) }
                exits.append((assembler.jump(), instruction.immediate))
            case .jcc:
                let taken = assembler.jump(if: instruction.sub)
                exits.append((assembler.jump(), after))
                if instruction.immediate == start {
                    assembler.bind(taken, to: assembler.position)
                    loops.append(assembler.position)
                    exits.append((assembler.jump(), start))
                } else {
                    exits.append((taken, instruction.immediate))
                }
            default:
                emit(instruction, into: &assembler)
            }
            if instruction.op == .jmp || instruction.op == .jcc { break }
            rip = after
            guard count < maximumInstructions, let following = next(rip), translatable(following) else {
                exits.append((assembler.jump(), rip))
                break
            }
            instruction = following
        }
        // Exits: each loads its RIP and joins the epilogue. Loops go back to the body unless the
        // passes are used up (then the block ends at its own start).
        let loopExits = loops
        var loopPatches: [Int] = []
        for site in loopExits {
            // The site is a `jmp` placeholder recorded above (its field follows the opcode byte).
            loopPatches.append(site + 1)
        }
        var epilogueJumps: [Int] = []
        var targets: [UInt64: Int] = [:]
        for (field, target) in exits where !loopPatches.contains(field) {
            if let existing = targets[target] {
                assembler.bind(field, to: existing)
                continue
            }
            targets[target] = assembler.position
            assembler.bind(field, to: assembler.position)
            assembler.move(.rax, immediate: target)
            epilogueJumps.append(assembler.jump())
        }
        for field in loopPatches {
            let loopStart = assembler.position
            assembler.bind(field, to: loopStart)
            let done = assembler.jumpIfPassesDone()
            assembler.bind(assembler.jump(), to: body)
            assembler.bind(done, to: assembler.position, short: true)
            assembler.move(.rax, immediate: start)
            epilogueJumps.append(assembler.jump())
        }
        let epilogue = assembler.position
        for field in epilogueJumps { assembler.bind(field, to: epilogue) }
        assembler.saveStateAndReturn()
        return Block(code: assembler.bytes, instructionCount: count, linearPages: Array(pages))
    }

    /// Whether the translator handles `instruction`: register operands only, 64-bit code.
    static func translatable(_ instruction: Instruction) -> Bool {
        let size = instruction.size
        let registerOperand = instruction.isRegister
        switch instruction.op {
        case .jmp, .jcc, .nop, .pause:
            return true
        case .movRegRm, .movRmReg, .movRmImm, .aluRmReg, .aluRegRm, .testRmReg, .incRm, .decRm, .notRm, .negRm,
            .shiftImm, .shiftCL, .xchgRmReg:
            return registerOperand
        case .aluRmImm, .testRmImm:
            return registerOperand && (size != 8 || fitsInt32(instruction.immediate))
        case .imulRegRm:
            return registerOperand && size != 1
        case .imulRegRmImm:
            return registerOperand && size != 1 && (size != 8 || fitsInt32(instruction.immediate))
        case .movzx, .movsx:
            let sourceSize = instruction.size2
            return registerOperand && (sourceSize == 4 ? size == 8 : sourceSize < size)
        case .cmovcc:
            return registerOperand && size != 1
        case .setcc:
            return registerOperand
        case .lea:
            return instruction.addressSize != 2 && size != 1
        default:
            return false
        }
    }

    static func fitsInt32(_ value: UInt64) -> Bool { Int64(bitPattern: value) == Int64(Int32(truncatingIfNeeded: value)) }
}
