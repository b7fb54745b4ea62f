/// Turns a run of decoded guest instructions into host code.
///
/// A block is a trace of 64-bit-mode instructions: it follows unconditional jumps and direct
/// calls into their targets, and a `ret` that returns to where an inlined call came from
/// continues after that call (a check that the popped address is that one, or the block ends
/// there). It ends at a conditional branch, an indirect jump, a `ret` it cannot predict, or
/// before the first instruction it does not translate, which the interpreter then executes.
///
/// Each guest instruction becomes the same host instruction on the guest's values, so results
/// and all six arithmetic flags (the undefined ones too) are the host CPU's, as under KVM. The
/// guest's flags live in the host's RFLAGS for the whole block and are saved at its end; the
/// code between guest instructions (addresses, TLB checks) touches no flag.
///
/// Memory operands go through the software TLB inline (`HostAssembler.checkTLB`). A miss leaves
/// the block before the instruction with everything before it done and nothing of it: the
/// interpreter then runs it, so page faults, MMIO, port I/O and stores to code behave exactly
/// as without translation (precise state, CR2, the device exit and its replay).
///
/// Blocks run on an instruction budget the caller gives (what is left of its own, and how long
/// translated code may run between checks for interrupts and stop requests): each block takes
/// its instruction count from it on entry, or leaves at its start if they do not fit, and an exit
/// part-way gives back what it did not run. A block whose branch leads back to its own start
/// loops inside the host code; an exit to another known RIP jumps, once the VMM has linked it,
/// straight into the block there (direct chaining); an indirect branch or a return looks its
/// target up in the RIP table from the host code and enters that block if it is current.
///
/// The function's contract (System V): rdi = the guest registers; rsi = the frame: [rsi] the
/// guest's RFLAGS in and out, [rsi + 8] the budget in and what is left out, [rsi + 16] out: the
/// rel32 field of an exit that could be linked (0: none), [rsi + 24] the TLB, [rsi + 32] guest
/// RAM, [rsi + 40] the RIP table, [rsi + 48] the current table tag, [rsi + 56] the address of
/// the vCPU's mail word (a block is not entered while it has mail), [rsi + 64] the CPU's segment
/// bases. It returns the next RIP.
struct BlockTranslator {
    /// Instructions per block at most (the rest goes into the next block).
    static let maximumInstructions = 64
    /// Inlined calls a block follows at most (deeper calls end it).
    static let maximumCallDepth = 8

    struct Block {
        var code: [UInt8]
        /// Where other blocks' linked exits and indirect branches enter (after the prologue).
        var chainEntry: Int
        /// Linear pages its instructions came from (invlpg of one invalidates it).
        var linearPages: [UInt64]
        /// Known RIPs its exits lead to that are instructions of its own trace (not its start):
        /// loops whose head is inside the block.
        var innerTargets: Set<UInt64> = []
    }

    /// What the translation may assume about the code it runs under.
    struct Context {
        /// The block runs at CPL3 (TLB lookups carry the user tag bit).
        var user: Bool
        /// Memory operands are translated (the host has BMI2 for flag-free TLB checks).
        var memory: Bool
    }

    /// Where the host code leaves the block, from the jump at `field`, with `retired` of the
    /// block's instructions done.
    struct Exit {
        enum Kind {
            /// Before an instruction the block could not complete (a TLB miss): RIP = `rip`.
            case miss(rip: UInt64)
            /// To a known RIP: linkable to the block there (the field is patched to it).
            case chain(target: UInt64)
            /// To the RIP in rax (ret, indirect jmp): looked up in the table.
            case indirect
        }
        var field: Int
        var retired: Int
        var kind: Kind
    }

    /// Host code for the guest instructions starting with `first` at `start`, or nil if `first` is
    /// not one the translator handles. `next` decodes the instruction at an address, or returns
    /// nil where decoding would fault (the block ends before it).
    static func translate(
        start: UInt64, first: Instruction, context: Context, next: (UInt64) -> Instruction?
    ) -> Block? {
        guard translatable(first, context) else { return nil }
        // A dry run finds the guest registers the trace uses; the four used most (six in a block
        // that never touches guest memory; only those used as 4 or 8 bytes) live in host
        // registers for the whole block.
        // It also finds loops whose head is inside the trace (the trace began part-way into the
        // loop): their branches go back into the block instead of leaving it.
        // The second pass follows the same trace: it replays the first pass's decoding.
        var decoded: [(rip: UInt64, instruction: Instruction?)] = []
        var probe = HostAssembler()
        probe.accesses = []
        let dryRun = emitBlock(
            start: start, first: first, context: context,
            next: { rip in
                let instruction = next(rip)
                decoded.append((rip, instruction))
                return instruction
            }, into: &probe)
        var assembler = HostAssembler()
        assembler.registerCache = Array(
            zip(
                cacheCandidates(probe.accesses ?? []),
                HostAssembler.cacheRegisters(blockUsesGuestMemory: probe.usesGuestMemory)))
        var replayed = 0
        return emitBlock(
            start: start, first: first, context: context,
            next: { rip in
                defer { replayed += 1 }
                return replayed < decoded.count && decoded[replayed].rip == rip ? decoded[replayed].instruction : next(rip)
            }, innerLoops: dryRun.innerTargets, into: &assembler)
    }

    /// Guest registers worth keeping in host registers, most used first: accessed at least
    /// three times, never as a byte or a word (AH...BH count for their register).
    static func cacheCandidates(_ accesses: [(index: UInt8, size: UInt8)]) -> [UInt8] {
        var uses = [Int](repeating: 0, count: 16)
        var narrow = [Bool](repeating: false, count: 16)
        for (index, size) in accesses {
            let register = Int(index >= 16 ? index & 3 : index & 15)
            uses[register] += 1
            if size < 4 || index >= 16 { narrow[register] = true }
        }
        return (0..<16).filter { !narrow[$0] && uses[$0] >= 3 }.sorted { uses[$0] > uses[$1] }.map { UInt8($0) }
    }

    private static func emitBlock(
        start: UInt64, first: Instruction, context: Context, next: (UInt64) -> Instruction?,
        innerLoops: Set<UInt64> = [], into assembler: inout HostAssembler
    ) -> Block {
        assembler.prologue()
        assembler.loadArithmeticFlags()
        // Entered from the VMM or from another block: take this block's instructions from the
        // budget, or leave at its start if they do not fit.
        let chainEntry = assembler.position
        let charge = assembler.adjustBudget()
        let exhausted = assembler.jumpIfBudgetExhausted()
        let mailed = assembler.jumpIfMail()
        assembler.loadCachedRegisters()
        let body = assembler.position
        var exits: [Exit] = []
        var returnAddresses: [UInt64] = []
        var instruction = first
        var count = 0
        var pages: [UInt64] = []
        var rip = start
        // Where each instruction of the trace starts (the first time its RIP appears), and for
        // inner loop heads the host position and instruction index a branch back re-enters at.
        var instructionStarts: [UInt64] = []
        var innerEntries = SmallMap<(position: Int, index: Int)>()
        trace: while true {
            if rip != start && !innerLoops.isEmpty && innerLoops.contains(rip) && innerEntries[rip] == nil {
                innerEntries[rip] = (assembler.position, count)
            }
            instructionStarts.append(rip)
            let after = rip &+ UInt64(instruction.length)
            if !pages.contains(rip >> 12) { pages.append(rip >> 12) }
            if !pages.contains((after &- 1) >> 12) { pages.append((after &- 1) >> 12) }
            // A memory operand's miss leaves before this instruction, with what came before it retired.
            let (retiredBefore, here) = (count, rip)
            let miss = { (field: Int) in exits.append(Exit(field: field, retired: retiredBefore, kind: .miss(rip: here))) }
            count += 1
            var following = after
            switch instruction.op {
            case .jmp:
                guard instruction.immediate != start else {
                    exits.append(Exit(field: assembler.jump(), retired: count, kind: .chain(target: start)))
                    break trace
                }
                following = instruction.immediate
            case .jcc:
                let taken = assembler.jump(if: instruction.sub)
                exits.append(Exit(field: assembler.jump(), retired: count, kind: .chain(target: after)))
                exits.append(Exit(field: taken, retired: count, kind: .chain(target: instruction.immediate)))
                break trace
            case .call:
                emitPush(immediate: after, user: context.user, into: &assembler, miss: miss)
                returnAddresses.append(after)
                following = instruction.immediate
            case .pushReg:
                emitPush(register: instruction.reg, user: context.user, into: &assembler, miss: miss)
            case .pushImm:
                emitPush(immediate: instruction.immediate, user: context.user, into: &assembler, miss: miss)
            case .popReg:
                emitPop(user: context.user, into: &assembler, miss: miss)
                assembler.store(.rax, guest: instruction.reg, size: 8)
            case .leave:
                emitLeave(user: context.user, into: &assembler, miss: miss)
            case .ret:
                emitPop(user: context.user, into: &assembler, miss: miss)
                guard let expected = returnAddresses.popLast() else {
                    exits.append(Exit(field: assembler.jump(), retired: count, kind: .indirect))
                    break trace
                }
                exits.append(Exit(field: assembler.jumpUnless(rax: expected), retired: count, kind: .indirect))
                following = expected
            case .divRm, .idivRm:
                emitDivide(instruction, user: context.user, into: &assembler, miss: miss)
            case .jmpRm:
                assembler.load(.rax, guest: instruction.rm, size: 8)
                exits.append(Exit(field: assembler.jump(), retired: count, kind: .indirect))
                break trace
            default:
                if isAtomicReadModifyWrite(instruction) {
                    emitAtomic(instruction, user: context.user, into: &assembler, miss: miss)
                } else if instruction.isRegister || !hasMemoryOperand(instruction.op) {
                    emit(instruction, into: &assembler)
                } else {
                    emitWithMemory(instruction, user: context.user, into: &assembler, miss: miss)
                }
            }
            rip = following
            guard count < maximumInstructions, returnAddresses.count <= maximumCallDepth, let decoded = next(rip),
                translatable(decoded, context)
            else {
                exits.append(Exit(field: assembler.jump(), retired: count, kind: .chain(target: rip)))
                break
            }
            instruction = decoded
        }
        assembler.setField(charge, to: -Int32(count))
        emitExits(
            exits, count: count, start: start, body: body, innerEntries: innerEntries, leaveAtStart: [exhausted, mailed],
            into: &assembler)
        var innerTargets: Set<UInt64> = []
        for exit in exits {
            if case .chain(let target) = exit.kind, target != start, instructionStarts.contains(target) {
                innerTargets.insert(target)
            }
        }
        return Block(
            code: assembler.bytes, chainEntry: chainEntry, linearPages: pages,
            innerTargets: innerTargets)
    }

    /// The exit stubs and the epilogue. Every exit from the body first writes the cached
    /// registers back. An exit that leaves part of the block undone gives the budget back; a
    /// chain exit to a loop head in the block (its start or an inner head) loops, through the
    /// budget and mail checks, the cached registers kept; another chain exit ends in a jump the
    /// VMM can link to the target block; an indirect one looks its target up in the table.
    private static func emitExits(
        _ exits: [Exit], count: Int, start: UInt64, body: Int, innerEntries: SmallMap<(position: Int, index: Int)>,
        leaveAtStart: [Int], into assembler: inout HostAssembler
    ) {
        var epilogueJumps: [Int] = []
        // Not entered: nothing ran, nothing is cached yet.
        for field in leaveAtStart { assembler.bind(field, to: assembler.position) }
        assembler.setField(assembler.adjustBudget(), to: Int32(count))
        assembler.move(.rax, immediate: start)
        epilogueJumps.append(assembler.jump())
        // Loop heads: the block's start (its body, after the cached registers are loaded) and
        // any inner head. A pass charges the instructions from the head to the end of the trace,
        // so every exit gives back what it always does.
        var loopHeads = innerEntries
        loopHeads[start] = (body, 0)
        var loopStubs = SmallMap<Int>()
        var missStubs = SmallMap<Int>()
        var lookup: Int?
        for exit in exits {
            switch exit.kind {
            case .chain(let target) where loopHeads[target] != nil:
                if let stub = loopStubs[target] {
                    assembler.bind(exit.field, to: stub)
                    continue
                }
                let (position, index) = loopHeads[target]!
                loopStubs[target] = assembler.position
                assembler.bind(exit.field, to: assembler.position)
                assembler.setField(assembler.adjustBudget(), to: -Int32(count - index))
                let exhausted = assembler.jumpIfBudgetExhausted()
                let mailed = assembler.jumpIfMail()
                assembler.bind(assembler.jump(), to: position)
                assembler.bind(exhausted, to: assembler.position)
                assembler.bind(mailed, to: assembler.position)
                assembler.writeBackCachedRegisters()
                assembler.setField(assembler.adjustBudget(), to: Int32(count - index))
                assembler.move(.rax, immediate: target)
                epilogueJumps.append(assembler.jump())
            case .chain(let target):
                assembler.bind(exit.field, to: assembler.position)
                assembler.writeBackCachedRegisters()
                let site = assembler.jump()
                assembler.bind(site, to: assembler.position)
                assembler.recordLinkSite(site)
                assembler.move(.rax, immediate: target)
                epilogueJumps.append(assembler.jump())
            case .miss(let rip):
                if let stub = missStubs[rip] {
                    assembler.bind(exit.field, to: stub)
                    continue
                }
                missStubs[rip] = assembler.position
                assembler.bind(exit.field, to: assembler.position)
                assembler.writeBackCachedRegisters()
                assembler.setField(assembler.adjustBudget(), to: Int32(count - exit.retired))
                assembler.move(.rax, immediate: rip)
                epilogueJumps.append(assembler.jump())
            case .indirect:
                assembler.bind(exit.field, to: assembler.position)
                assembler.writeBackCachedRegisters()
                if exit.retired < count { assembler.setField(assembler.adjustBudget(), to: Int32(count - exit.retired)) }
                if let lookup {
                    assembler.bind(assembler.jump(), to: lookup)
                } else {
                    lookup = assembler.position
                    epilogueJumps += assembler.lookUpAndJump()
                }
            }
        }
        let epilogue = assembler.position
        for field in epilogueJumps { assembler.bind(field, to: epilogue) }
        assembler.saveStateAndReturn()
    }

    /// Whether the translator handles `instruction`: 64-bit code; register operands, or with
    /// `context.memory` a plain memory operand (64-bit addressing, no lock; for a ModRM operand
    /// an FS or GS override too, whose base the block reads when it runs).
    static func translatable(_ instruction: Instruction, _ context: Context) -> Bool {
        // Code CPL3 may not execute: the interpreter raises the page fault.
        if context.user && !instruction.userExecutable { return false }
        let size = instruction.size
        let plainMemory =
            context.memory && instruction.addressSize == 8 && instruction.segment == 0xFF && !instruction.locked
        let segmentOK = instruction.segment == 0xFF || instruction.segment == 4 || instruction.segment == 5
        let lockableMemory = context.memory && instruction.addressSize == 8 && segmentOK
        let modRMMemory = lockableMemory && !instruction.locked
        let operandOK = instruction.isRegister || (modRMMemory && hasMemoryOperand(instruction.op))
        // A locked read-modify-write (`BlockTranslator+Atomics`).
        let atomicOK = lockableMemory && isAtomicReadModifyWrite(instruction)
        switch instruction.op {
        case .jmp, .jcc, .nop, .pause:
            return true
        case .call, .pushImm, .pushReg, .popReg, .leave:
            return plainMemory && size == 8
        case .ret:
            return plainMemory && size == 8 && instruction.immediate == 0
        case .jmpRm:
            return instruction.isRegister && size == 8
        case .movRegRm, .movRmReg, .movRmImm, .aluRegRm, .testRmReg:
            return operandOK
        case .aluRmReg, .incRm, .decRm, .notRm, .negRm:
            return operandOK || atomicOK
        case .shiftImm:
            return operandOK
        case .shiftCL:
            return instruction.isRegister
        case .xchgRmReg:
            return instruction.isRegister || atomicOK
        case .cmpxchg, .xadd:
            return atomicOK
        case .aluRmImm:
            return (operandOK || atomicOK) && (size != 8 || fitsInt32(instruction.immediate))
        case .testRmImm:
            return operandOK && (size != 8 || fitsInt32(instruction.immediate))
        case .imulRegRm:
            return operandOK && size != 1
        case .imulRegRmImm:
            return instruction.isRegister && size != 1 && (size != 8 || fitsInt32(instruction.immediate))
        case .movzx, .movsx:
            let sourceSize = instruction.size2
            return operandOK && (sourceSize == 4 ? size == 8 : sourceSize < size)
        case .cmovcc:
            return operandOK && size != 1
        case .setcc:
            return instruction.isRegister
        case .lea:
            return instruction.addressSize != 2 && size != 1
        case .divRm, .idivRm:
            // The checks before the divide use BMI2, which `context.memory` implies.
            return context.memory && (size == 4 || size == 8) && (instruction.isRegister || modRMMemory)
        case .bswap:
            return size == 4 || size == 8
        default:
            return false
        }
    }

    /// Ops whose ModRM operand may be memory in a translated block.
    static func hasMemoryOperand(_ op: Op) -> Bool {
        switch op {
        case .movRegRm, .movRmReg, .movRmImm, .aluRmReg, .aluRegRm, .aluRmImm, .testRmReg, .testRmImm, .incRm, .decRm,
            .notRm, .negRm, .imulRegRm, .movzx, .movsx, .cmovcc, .shiftImm:
            return true
        default:
            return false
        }
    }

    static func fitsInt32(_ value: UInt64) -> Bool { Int64(bitPattern: value) == Int64(Int32(truncatingIfNeeded: value)) }
}

/// A map from RIP to a value for the handful of entries one block has (its loop heads, exit
/// stubs): a linear search of an array, where a hashed dictionary cost more than the search.
struct SmallMap<Value> {
    private var keys: [UInt64] = []
    private var values: [Value] = []

    subscript(key: UInt64) -> Value? {
        get { keys.firstIndex(of: key).map { values[$0] } }
        set {
            if let index = keys.firstIndex(of: key) {
                if let newValue {
                    values[index] = newValue
                } else {
                    keys.remove(at: index)
                    values.remove(at: index)
                }
            } else if let newValue {
                keys.append(key)
                values.append(newValue)
            }
        }
    }
}
