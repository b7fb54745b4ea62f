import CHostTimer
import Glibc
import Synchronization

/// A translated block as the host calls it (see `BlockTranslator`).
typealias BlockFunction = @convention(c) (UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<UInt64>) -> UInt64

/// One vCPU's translations: the code cache and a direct-mapped table from RIP to block, tagged
/// like the decoded-instruction cache (RIP, decode generation) plus the CPL, so whatever makes
/// decoded instructions stale (a store to their code, invlpg of their page, a control-register
/// write) makes the blocks stale too.
public final class TranslationCache {
    struct Entry {
        var rip: UInt64 = ~0
        var generation: UInt32 = 0
        var cpl: Int8 = -1
        var instructionCount: Int32 = 0
        /// nil: the instruction at `rip` is not translated; the interpreter runs it.
        var function: BlockFunction?
    }

    static let entries = 1 << 14
    /// How many passes a looping block may make before the VMM's loop checks for interrupts and
    /// stop requests again.
    static let passesBetweenChecks = 4096
    /// How many instructions a block may retire while an APIC timer is armed, so the clock is
    /// still read about as often as the interpreter reads it.
    static let instructionsWhileTimerArmed = 256

    let table: UnsafeMutablePointer<Entry>
    let memory: ExecutableMemory
    /// [0]: the guest's RFLAGS in and out; [1]: the pass limit in, the passes left out; [2]:
    /// out, the instructions of the last pass; [3]: the software TLB; [4]: guest RAM.
    let frame: UnsafeMutablePointer<UInt64>
    /// Whether blocks take memory operands (their TLB checks need BMI2).
    let translatesMemory: Bool
    /// Blocks translated, instructions retired inside blocks, and times the code cache filled.
    public private(set) var blocksTranslated = 0
    public internal(set) var instructionsInBlocks: UInt64 = 0
    public private(set) var cacheResets = 0

    /// nil when the host will not map the code cache.
    public init?(codeBytes: Int = 8 << 20, memoryOperands: Bool = true) {
        guard let memory = ExecutableMemory(capacity: codeBytes) else { return nil }
        self.memory = memory
        translatesMemory = memoryOperands && chosttimer_host_has_bmi2() != 0
        table = .allocate(capacity: Self.entries)
        table.initialize(repeating: Entry(), count: Self.entries)
        frame = .allocate(capacity: 5)
        frame.initialize(repeating: 0, count: 5)
    }

    deinit {
        if getenv("HVB_TRANSLATOR_STATS") != nil {
            let line =
                "translator: \(blocksTranslated) blocks, \(instructionsInBlocks) instructions in blocks, \(cacheResets) resets\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
        table.deallocate()
        frame.deallocate()
    }

    func slot(_ rip: UInt64) -> UnsafeMutablePointer<Entry> {
        table + (Int(truncatingIfNeeded: rip ^ (rip >> 14)) & (Self.entries - 1))
    }

    /// Places `code`, emptying the cache (and forgetting every block) first if it is full.
    func place(_ code: [UInt8]) -> UnsafeRawPointer? {
        blocksTranslated += 1
        if let placed = memory.place(code) { return placed }
        memory.reset()
        table.update(repeating: Entry(), count: Self.entries)
        cacheResets += 1
        return memory.place(code)
    }
}

extension X86CPU {
    /// Runs like `run` but executes translated blocks where it can (uniprocessor only: blocks
    /// do not read other vCPUs' mail while they run).
    func runTranslating(_ maxInstructions: Int, cache: TranslationCache) -> X86Stop {
        var remaining = maxInstructions
        var sinceStopCheck = 0
        cache.frame[3] = UInt64(UInt(bitPattern: tlb))
        cache.frame[4] = UInt64(UInt(bitPattern: ram))
        while remaining > 0 {
            if interruptWork && deviceLog.isEmpty {
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
                done = runBlock(
                    cache, budget: timerArmed ? min(remaining, TranslationCache.instructionsWhileTimerArmed) : remaining)
                if timerArmed && done > 1 { timerPollCountdown -= done - 1 }
            }
            if done == 0 {
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

    /// Runs the block at RIP (translating it first if needed) for at most `budget` instructions.
    /// Returns the instructions it retired: 0 when there is no block here or it would not fit.
    @inline(__always)
    private func runBlock(_ cache: TranslationCache, budget: Int) -> Int {
        let start = rip
        let entry = cache.slot(start)
        if entry.pointee.rip != start || entry.pointee.generation != decodeGeneration || Int(entry.pointee.cpl) != cpl {
            translateBlock(at: start, into: entry, cache)
        }
        guard let function = entry.pointee.function else { return 0 }
        let count = Int(entry.pointee.instructionCount)
        guard budget >= count else { return 0 }
        // Most budgets are far above a check interval's worth: no division then.
        let limit =
            budget >= count &* TranslationCache.passesBetweenChecks ? TranslationCache.passesBetweenChecks : budget / count
        cache.frame[0] = arithmeticFlagBits
        cache.frame[1] = UInt64(limit)
        rip = function(registers, cache.frame)
        flagSource = .explicit
        flagValue = cache.frame[0] & Self.arithmeticFlags
        let retiredHere = (limit - Int(cache.frame[1]) - 1) * count + Int(cache.frame[2])
        retired &+= UInt64(retiredHere)
        cache.instructionsInBlocks &+= UInt64(retiredHere)
        return retiredHere
    }

    /// Decodes from `start` and translates what it can. A fault while decoding leaves no trace
    /// (CR2 is restored): the first instruction's is raised when the interpreter runs it, a
    /// later one's ends the block before that instruction.
    @inline(never)
    private func translateBlock(
        at start: UInt64, into entry: UnsafeMutablePointer<TranslationCache.Entry>, _ cache: TranslationCache
    ) {
        let savedCR2 = cr2
        guard let first = try? decode(at: start) else {
            cr2 = savedCR2
            entry.pointee = TranslationCache.Entry()
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
        var translated = TranslationCache.Entry(rip: start, generation: decodeGeneration, cpl: Int8(cpl))
        if let block, let code = cache.place(block.code) {
            for page in block.linearPages { codeLinearPages.insert(page) }
            translated.function = unsafeBitCast(code, to: BlockFunction.self)
            translated.instructionCount = Int32(block.instructionCount)
        }
        entry.pointee = translated
    }
}
