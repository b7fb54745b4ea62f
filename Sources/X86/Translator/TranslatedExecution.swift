import CHostTimer
import Glibc
import Synchronization

/// A translated block as the host calls it (see `BlockTranslator`).
typealias BlockFunction = @convention(c) (UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<UInt64>) -> UInt64

/// One vCPU's translations: the code cache and a direct-mapped table from RIP to block, tagged
/// like the decoded-instruction cache (decode generation) plus the CPL, so whatever makes
/// decoded instructions stale (a store to their code, invlpg of their page, a control-register
/// write) makes the blocks stale too.
///
/// The table is raw words because translated code reads it (indirect branches look their
/// target up without returning to the VMM): per entry the RIP, the tag, the block's chain
/// entry (0: none) and its function (0: the instruction there is not translated).
public final class TranslationCache {
    static let entries = 1 << 14
    static let wordsPerEntry = 4
    /// How many instructions translated code may retire before the VMM's loop checks for
    /// interrupts and stop requests again.
    /// (At most 4095: the blocks' flag-free budget check tests rbx >> 12 for zero.)
    static let instructionsBetweenChecks = 4095
    /// How many instructions translated code may retire while an APIC timer is armed, so the
    /// clock is still read about as often as the interpreter reads it.
    static let instructionsWhileTimerArmed = 256
    /// With other vCPUs: how many instructions translated code may retire before this vCPU reads
    /// its mail (IPIs, INIT, another vCPU's code writes and TLB flushes) again.
    static let instructionsBetweenMailChecks = 1024

    /// Zeroed: tag 0 never matches, so an untouched entry is an empty one.
    private let blockTable = ZeroedTable<UInt64>(count: TranslationCache.entries * TranslationCache.wordsPerEntry)
    let table: UnsafeMutablePointer<UInt64>
    /// Per slot: the RIP last arrived at without a block, and its tag with the arrivals counted
    /// in bits 48 and up. Code is translated on its `hotAfter`-th arrival, so code that runs a
    /// few times (the boot path, one-shot setup) is not worth its translation and stays
    /// interpreted.
    private let arrivalTable = ZeroedTable<UInt64>(count: TranslationCache.entries * 2)
    let arrivals: UnsafeMutablePointer<UInt64>
    let hotAfter: UInt64
    let memory: ExecutableMemory
    /// [0]: the guest's RFLAGS in and out; [1]: the budget in, what is left out; [2]: out, a
    /// linkable exit's rel32 field; [3]: the software TLB; [4]: guest RAM; [5]: the table; [6]:
    /// the current tag; [7]: the mail word blocks check on entry; [8]: the CPU's segment bases
    /// (FS- and GS-relative operands).
    let frame: UnsafeMutablePointer<UInt64>
    /// The mail word of a vCPU alone (nobody writes to it).
    let noMail: UnsafeMutablePointer<UInt32>
    /// Whether blocks take memory operands (their TLB checks need BMI2).
    let translatesMemory: Bool
    /// Blocks translated, instructions retired inside blocks, exits linked to their targets,
    /// and times the code cache filled.
    public private(set) var blocksTranslated = 0
    public internal(set) var instructionsInBlocks: UInt64 = 0
    /// Instructions (and exception deliveries) the interpreter ran while translating.
    public internal(set) var instructionsInterpreted: UInt64 = 0
    public internal(set) var linksMade = 0
    public private(set) var cacheResets = 0
    /// TSC cycles spent translating (HVB_TRANSLATOR_STATS reports them per block).
    var translationCycles: UInt64 = 0
    /// With HVB_TRANSLATOR_STATS: instructions the interpreter ran, by operation and form
    /// (`InterpretedForm`), to say what is left to translate.
    var interpretedOperations: [UInt64]? =
        getenv("HVB_TRANSLATOR_STATS") != nil ? Array(repeating: 0, count: 256 << InterpretedForm.bits) : nil

    /// Arrivals at a RIP before its code is translated, by default.
    public static let defaultHotAfter = 8

    /// nil when the host will not map the code cache.
    public init?(codeBytes: Int = 64 << 20, memoryOperands: Bool = true, hotAfter: Int = defaultHotAfter) {
        // Translated code indexes the TLB as (page & 255) * 24 bytes.
        precondition(MemoryLayout<TLBEntry>.stride == 24 && X86CPU.tlbEntries == 256, "TLB layout changed")
        guard let memory = ExecutableMemory(capacity: codeBytes) else { return nil }
        self.memory = memory
        (table, arrivals) = (blockTable.pointer, arrivalTable.pointer)
        translatesMemory = memoryOperands && chosttimer_host_has_bmi2() != 0
        self.hotAfter = UInt64(max(1, hotAfter))
        frame = .allocate(capacity: 9)
        frame.initialize(repeating: 0, count: 9)
        noMail = .allocate(capacity: 1)
        noMail.initialize(to: 0)
        frame[5] = UInt64(UInt(bitPattern: table))
    }

    deinit {
        if getenv("HVB_TRANSLATOR_STATS") != nil {
            let line =
                "translator: \(blocksTranslated) blocks, \(instructionsInBlocks) instructions in blocks, "
                + "\(instructionsInterpreted) interpreted, "
                + "\(linksMade) links, \(cacheResets) resets, \(translationCycles / UInt64(max(1, blocksTranslated))) TSC cycles translating per block\n"
            let total = Double(max(1, instructionsInBlocks + instructionsInterpreted))
            let share = String(format: "%.2f", 100 * Double(instructionsInBlocks) / total)
            let counts = interpretedOperations ?? []
            let top = counts.indices.filter { counts[$0] > 0 }.sorted { counts[$0] > counts[$1] }.prefix(24)
                .map { "\(InterpretedForm.name($0)) \(counts[$0])" }.joined(separator: ", ")
            let detail = "translator: \(share)% of instructions in translated code; interpreted most: \(top)\n"
            _ = (line + detail).withCString { write(2, $0, strlen($0)) }
        }
        frame.deallocate()
        noMail.deallocate()
    }

    /// The tag blocks of this decode generation and CPL carry (never 0).
    static func tag(generation: UInt32, cpl: Int) -> UInt64 { UInt64(generation) | UInt64(cpl + 1) << 32 }

    /// The entry for `rip` (the translated code computes the same slot).
    func slot(_ rip: UInt64) -> UnsafeMutablePointer<UInt64> {
        table + (Int(truncatingIfNeeded: rip) & (Self.entries - 1)) * Self.wordsPerEntry
    }

    /// Counts an arrival at `rip` with no block for `tag`; true when the code there is hot.
    func arrived(at rip: UInt64, tag: UInt64) -> Bool {
        let candidate = arrivals + (Int(truncatingIfNeeded: rip) & (Self.entries - 1)) * 2
        if candidate[0] != rip || candidate[1] & 0xFFFF_FFFF_FFFF != tag {
            candidate[0] = rip
            candidate[1] = tag | 1 << 48
            return hotAfter <= 1
        }
        let count = (candidate[1] >> 48) + 1
        candidate[1] = tag | count << 48
        return count >= hotAfter
    }

    /// Tag 0 never matches (a real tag carries CPL + 1), so zeroes forget every entry.
    private func forgetBlocks() {
        blockTable.clear()
    }

    /// Places `code`, emptying the cache (and forgetting every block) first if it is full.
    func place(_ code: [UInt8]) -> UnsafeRawPointer? {
        blocksTranslated += 1
        if let placed = memory.place(code) { return placed }
        forgetAll()
        return memory.place(code)
    }

    /// Empties the code cache and forgets every block (the cache is full, or the decode
    /// generation wrapped around, which could make old tags current again).
    public func forgetAll() {
        memory.reset()
        forgetBlocks()
        cacheResets += 1
    }
}

extension X86CPU {
    /// Runs like `run` but executes translated blocks where it can. With other vCPUs, mail (IPIs,
    /// INIT, code and TLB invalidations) is read between blocks, which then run at most
    /// `instructionsBetweenMailChecks`.
    func runTranslating(_ maxInstructions: Int, cache: TranslationCache, sharesRAM: Bool) -> X86Stop {
        var remaining = maxInstructions
        var sinceStopCheck = 0
        cache.frame[3] = UInt64(UInt(bitPattern: tlb))
        cache.frame[4] = UInt64(UInt(bitPattern: ram))
        cache.frame[8] = UInt64(UInt(bitPattern: segmentBases))
        // With other vCPUs every block entry checks for mail, so IPIs and another vCPU's code
        // and TLB invalidations take effect within a block, as the interpreter's within an
        // instruction.
        cache.frame[7] = UInt64(UInt(bitPattern: sharesRAM ? mail : cache.noMail))
        while remaining > 0 {
            if (interruptWork || (sharesRAM && hasMail)) && deviceLog.isEmpty {
                if let stop = serviceInterrupts() { return stop }
                if stopPending {
                    let reason = stopReason ?? .interrupted
                    stopReason = nil
                    return reason
                }
            }
            var done = 0
            // Blocks run between interrupts: not while one is pending or the CPU waits, nor
            // while an instruction waits for its device access, nor under single-stepping.
            if deviceLog.isEmpty && !halted && !waitingForStartup && !apic.hasPending
                && otherFlags & Self.trapFlag == 0 && is64BitCode
            {
                let timerArmed = apic.timerDeadline != nil
                let cap =
                    timerArmed
                    ? TranslationCache.instructionsWhileTimerArmed
                    : sharesRAM ? TranslationCache.instructionsBetweenMailChecks : TranslationCache.instructionsBetweenChecks
                done = runBlocks(cache, budget: min(remaining, cap))
                if timerArmed && done > 1 { timerPollCountdown -= done - 1 }
            }
            if done == 0 {
                cache.instructionsInterpreted &+= 1
                if cache.interpretedOperations != nil { countInterpretedOperation(cache) }
                if step() {
                    let reason = stopReason ?? .interrupted
                    stopReason = nil
                    return reason
                }
                done = 1
            }
            remaining -= done
            sinceStopCheck += done
            if sinceStopCheck >= 8192 {
                sinceStopCheck = 0
                if stopRequested.exchange(false, ordering: .relaxed) { return .interrupted }
            }
        }
        return .interrupted
    }

    /// Runs the block at RIP (translating it first if needed) and whatever it chains to, for at
    /// most `budget` instructions. Returns the instructions retired: 0 when there is no block
    /// here or it did not get past its first instruction.
    @inline(__always)
    private func runBlocks(_ cache: TranslationCache, budget: Int) -> Int {
        let start = rip
        let tag = TranslationCache.tag(generation: decodeGeneration, cpl: cpl)
        let entry = cache.slot(start)
        if entry[0] != start || entry[1] != tag {
            guard cache.arrived(at: start, tag: tag) else { return 0 }
            let t0 = chosttimer_rdtsc()
            translateBlock(at: start, into: entry, tag: tag, cache)
            cache.translationCycles &+= chosttimer_rdtsc() &- t0
        }
        guard entry[3] != 0, let function = UnsafeRawPointer(bitPattern: UInt(entry[3])) else { return 0 }
        cache.frame[0] = arithmeticFlagBits
        cache.frame[1] = UInt64(budget)
        cache.frame[2] = 0
        cache.frame[6] = tag
        rip = unsafeBitCast(function, to: BlockFunction.self)(registers, cache.frame)
        flagSource = .explicit
        flagValue = cache.frame[0] & Self.arithmeticFlags
        let retiredHere = budget - Int(cache.frame[1])
        retired &+= UInt64(retiredHere)
        cache.instructionsInBlocks &+= UInt64(retiredHere)
        if cache.frame[2] != 0 { link(UInt(cache.frame[2]), to: rip, tag: tag, cache) }
        return retiredHere
    }

    /// HVB_TRANSLATOR_STATS: what the interpreter is about to run (decoding has no effect kept).
    @inline(never)
    private func countInterpretedOperation(_ cache: TranslationCache) {
        let savedCR2 = cr2
        defer { cr2 = savedCR2 }
        guard let instruction = try? decode(at: rip) else { return }
        var form = 0
        if instruction.locked { form |= InterpretedForm.locked }
        if instruction.repeatPrefix != 0 { form |= InterpretedForm.repeated }
        if instruction.segment != 0xFF { form |= InterpretedForm.segment }
        if instruction.addressSize == 4 { form |= InterpretedForm.address32 }
        if !is64BitCode { form |= InterpretedForm.legacyCode }
        if instruction.isRegister { form |= InterpretedForm.register }
        cache.interpretedOperations?[Int(instruction.op.rawValue) << InterpretedForm.bits | form] += 1
    }

    /// Points the exit whose rel32 field is at `field` straight at the block for `target`, if
    /// there is a current one (a target not yet hot is linked on a later exit).
    @inline(never)
    private func link(_ field: UInt, to target: UInt64, tag: UInt64, _ cache: TranslationCache) {
        let entry = cache.slot(target)
        guard entry[0] == target, entry[1] == tag, entry[2] != 0, let site = UnsafeRawPointer(bitPattern: field),
            let destination = UnsafeRawPointer(bitPattern: UInt(entry[2]))
        else { return }
        if cache.memory.link(field: site, to: destination) { cache.linksMade += 1 }
    }

    /// Decodes from `start` and translates what it can. A fault while decoding leaves no trace
    /// (CR2 is restored): the first instruction's is raised when the interpreter runs it, a
    /// later one's ends the block before that instruction.
    @inline(never)
    private func translateBlock(
        at start: UInt64, into entry: UnsafeMutablePointer<UInt64>, tag: UInt64, _ cache: TranslationCache
    ) {
        let savedCR2 = cr2
        entry[0] = start
        entry[1] = tag
        entry[2] = 0
        entry[3] = 0
        guard let first = try? decode(at: start) else {
            cr2 = savedCR2
            return
        }
        let context = BlockTranslator.Context(user: cpl == 3, memory: cache.translatesMemory)
        let block = BlockTranslator.translate(start: start, first: first, context: context) { address in
            do {
                return try self.decode(at: address)
            } catch {
                self.cr2 = savedCR2
                return nil
            }
        }
        guard let block, let code = cache.place(block.code) else { return }
        // Placing may have emptied the table: the entry is written after it.
        for page in block.linearPages { codeLinearPages.insert(page) }
        entry[0] = start
        entry[1] = tag
        entry[2] = UInt64(UInt(bitPattern: code + block.chainEntry))
        entry[3] = UInt64(UInt(bitPattern: code))
    }
}

/// The form of an interpreted instruction HVB_TRANSLATOR_STATS counts: its operation's raw value
/// shifted left by `bits`, or-ed with these.
enum InterpretedForm {
    static let bits = 6
    static let locked = 1, repeated = 2, segment = 4, address32 = 8, legacyCode = 16, register = 32

    static func name(_ index: Int) -> String {
        var name = Op(rawValue: UInt8(index >> bits)).map { "\($0)" } ?? "op\(index >> bits)"
        if index & locked != 0 { name = "lock " + name }
        if index & repeated != 0 { name = "rep " + name }
        if index & segment != 0 { name += "(seg)" }
        if index & address32 != 0 { name += "(addr32)" }
        if index & legacyCode != 0 { name += "(32-bit code)" }
        if index & register != 0 { name += "(reg)" }
        return name
    }
}
