import Machine
import Testing

@testable import X86

/// The translator against the interpreter on code aimed at it: memory operands, calls, faults
/// and device accesses in the middle of a block, self-modifying code, jumps into the middle of
/// an instruction, code outside RAM, a bounded code cache and W^X.
@Suite struct TranslatorBehaviourTests {
    static let handler: UInt64 = 0x11000
    static let data: UInt64 = 0x20000

    /// Everything an instruction can change: registers, RIP, RFLAGS, CR2, the retired count, and
    /// the data and stack pages.
    static func state(_ machine: LongModeMachine) throws -> [UInt64] {
        let cpu = machine.cpu
        var words = (0..<16).map { cpu.registers[$0] } + [cpu.rip, cpu.rflags, cpu.cr2, cpu.retired]
        for offset in stride(from: 0, to: 64, by: 8) {
            words.append(try machine.memory.readValue(UInt64.self, at: data + UInt64(offset)))
            words.append(try machine.memory.readValue(UInt64.self, at: 0x80000 - 64 + UInt64(offset)))
        }
        return words
    }

    /// Runs `code` under the interpreter and the translator with the same setup; returns both
    /// machines after their stops, which must be the same.
    static func compare(
        _ code: [UInt8], budget: Int = 100_000, cache: () -> TranslationCache? = { TranslationCache() },
        setup: (LongModeMachine) throws -> Void = { _ in }
    ) throws -> (interpreted: LongModeMachine, translated: LongModeMachine, stop: X86Stop) {
        let interpreted = try LongModeMachine(code: code)
        let translated = try LongModeMachine(code: code)
        try setup(interpreted)
        try setup(translated)
        translated.cpu.translation = cache()
        let expected = interpreted.cpu.run(maxInstructions: budget)
        let actual = translated.cpu.run(maxInstructions: budget)
        #expect(actual == expected)
        #expect(try state(translated) == state(interpreted))
        return (interpreted, translated, actual)
    }

    /// Loads, stores, read-modify-writes, push/pop and a call whose callee reads and writes
    /// memory, in a 100-pass loop (flags from a memory compare feed an adc).
    @Test func memoryOperandsCallsAndTheStackGiveTheInterpretersState() throws {
        let code: [UInt8] = [
            0xB9, 0x64, 0x00, 0x00, 0x00, 0x48, 0xC7, 0xC6, 0x00, 0x00, 0x02, 0x00, 0x48, 0x8B, 0x06, 0x48, 0x01, 0xC8,
            0x48, 0x89, 0x46, 0x08, 0x48, 0x01, 0x0E, 0x48, 0xFF, 0x46, 0x10, 0x50, 0xE8, 0x16, 0x00, 0x00, 0x00, 0x5A,
            0x0F, 0xB6, 0x5E, 0x01, 0x48, 0x83, 0x7E, 0x08, 0x03, 0x48, 0x13, 0x1E, 0x48, 0x89, 0x5E, 0x18, 0xFF, 0xC9,
            0x75, 0xD4, 0xF4, 0x48, 0x0F, 0xAF, 0x46, 0x08, 0x48, 0x31, 0x46, 0x20, 0xC3,
        ]
        let (_, translated, stop) = try Self.compare(code)
        #expect(stop == .halt)
        let cache = try #require(translated.cpu.translation)
        #expect(cache.instructionsInBlocks >= 1000, "the loop, its call and its memory accesses ran as host code")
        #expect(translated.cpu.registers[4] == 0x80000, "every push was popped and every call returned")
    }

    /// A frame-pointer function (push rbp; mov rbp, rsp; sub rsp; memory through rbp; leave;
    /// ret) called 200 times: `leave` runs translated with the interpreter's RSP, RBP and stack.
    @Test func leaveRestoresTheFrameAsInterpreted() throws {
        let code: [UInt8] = [
            0xB9, 0xC8, 0x00, 0x00, 0x00, 0x48, 0xC7, 0xC5, 0x34, 0x12, 0x00, 0x00, 0xE8, 0x05, 0x00, 0x00, 0x00, 0xFF,
            0xC9, 0x75, 0xF7, 0xF4, 0x55, 0x48, 0x89, 0xE5, 0x48, 0x83, 0xEC, 0x20, 0x48, 0x89, 0x4D, 0xF8, 0x48, 0x03,
            0x45, 0xF8, 0xC9, 0xC3,
        ]
        let (_, translated, stop) = try Self.compare(code)
        #expect(stop == .halt)
        let cache = try #require(translated.cpu.translation)
        #expect(cache.instructionsInBlocks >= 1000, "the calls, frames and leaves ran as host code")
        #expect(translated.cpu.registers[5] == 0x1234, "every leave restored the caller's RBP")
        #expect(translated.cpu.registers[4] == 0x80000)
    }

    /// Shifts and rotates by an immediate on memory of each width (shl, sar by 1, rol, shr, rcl
    /// through the carry) in a 100-pass loop whose adds and adc consume their results and flags.
    @Test func shiftsOnMemoryGiveTheInterpretersState() throws {
        let code: [UInt8] = [
            0xB9, 0x64, 0x00, 0x00, 0x00, 0x48, 0xC7, 0xC6, 0x00, 0x00, 0x02, 0x00, 0x48, 0xB8, 0x89, 0x67, 0x45, 0x23,
            0x01, 0x00, 0x00, 0x00, 0x48, 0x89, 0x06, 0x31, 0xC0, 0x48, 0xC7, 0x46, 0x08, 0xC7, 0xCF, 0xFF, 0xFF, 0x48,
            0xC1, 0x26, 0x03, 0x48, 0xD1, 0x7E, 0x08, 0xC1, 0x46, 0x10, 0x05, 0x01, 0x4E, 0x10, 0x66, 0xC1, 0x6E, 0x18,
            0x02, 0x66, 0x01, 0x4E, 0x18, 0xD0, 0x56, 0x20, 0x48, 0x83, 0xD0, 0x00, 0xFF, 0xC9, 0x75, 0xDD, 0xF4,
        ]
        let (_, translated, stop) = try Self.compare(code)
        #expect(stop == .halt)
        let cache = try #require(translated.cpu.translation)
        #expect(cache.instructionsInBlocks >= 800, "the loop's shifts on memory ran as host code")
    }

    /// FS- and GS-relative loads, stores and read-modify-writes (absolute and register-based, as
    /// thread and per-CPU data are reached) in a 100-pass loop that swaps the GS base every pass
    /// (swapgs ends a block): translated code reads the base when it runs, not when translated.
    @Test func fsAndGSRelativeOperandsUseTheBaseOfTheMoment() throws {
        let code: [UInt8] = [
            0xB9, 0x64, 0x00, 0x00, 0x00,  // mov ecx, 100
            0x48, 0xC7, 0xC3, 0x08, 0x00, 0x00, 0x00,  // mov rbx, 8
            0x31, 0xC0,  // xor eax, eax
            0x48, 0x8B, 0x34, 0x25, 0x08, 0x00, 0x00, 0x00,  // mov rsi, [8]: page 0 in the TLB too
            0x65, 0x48, 0x8B, 0x14, 0x25, 0x08, 0x00, 0x00, 0x00,  // loop: mov rdx, gs:[8]
            0x48, 0x01, 0xCA,  // add rdx, rcx
            0x65, 0x48, 0x89, 0x14, 0x25, 0x08, 0x00, 0x00, 0x00,  // mov gs:[8], rdx
            0x64, 0x48, 0x01, 0x0C, 0x25, 0x10, 0x00, 0x00, 0x00,  // add fs:[0x10], rcx
            0x65, 0x48, 0xFF, 0x04, 0x25, 0x18, 0x00, 0x00, 0x00,  // inc qword gs:[0x18]
            0x64, 0x48, 0x03, 0x43, 0x20,  // add rax, fs:[rbx+0x20]
            0x65, 0x0F, 0xB6, 0x53, 0x01,  // movzx edx, byte gs:[rbx+1]
            0x48, 0x01, 0xD0,  // add rax, rdx
            0x0F, 0x01, 0xF8,  // swapgs
            0xFF, 0xC9,  // dec ecx
            0x75, 0xC5,  // jnz loop
            0xF4,  // hlt
        ]
        let (_, translated, stop) = try Self.compare(
            code,
            setup: { machine in
                machine.cpu.segmentBases[4] = Self.data
                machine.cpu.segmentBases[5] = Self.data + 0x20
                machine.cpu.msrKernelGSBase = Self.data
                try machine.memory.writeValue(UInt64(0x1234_5678_9ABC_DEF0), at: Self.data + 0x28)
            })
        #expect(stop == .halt)
        let cache = try #require(translated.cpu.translation)
        #expect(cache.instructionsInBlocks >= 600, "the FS- and GS-relative instructions ran as host code")
        #expect(try translated.memory.readValue(UInt64.self, at: Self.data + 0x18) == 50, "inc gs:[0x18] with each base 50 times")
    }

    /// 64- and 32-bit div and idiv on registers and memory (cqo/cdq dividends, a negative
    /// divisor), bswap, and a div whose high half is not zero (left to the interpreter by the
    /// checks), in a 100-pass loop whose adds consume every quotient and remainder.
    @Test func divisionAndByteSwapsGiveTheInterpretersState() throws {
        let code: [UInt8] = [
            0xB9, 0x64, 0x00, 0x00, 0x00,  // mov ecx, 100
            0x48, 0xC7, 0xC6, 0x00, 0x00, 0x02, 0x00,  // mov rsi, 0x20000
            0x48, 0xC7, 0xC7, 0x07, 0x00, 0x00, 0x00,  // mov rdi, 7
            0x45, 0x31, 0xC0,  // xor r8d, r8d
            0x48, 0x8D, 0x04, 0xCD, 0x39, 0x05, 0x00, 0x00,  // loop: lea rax, [rcx*8 + 0x539]
            0x31, 0xD2,  // xor edx, edx
            0x48, 0xF7, 0xF7,  // div rdi
            0x49, 0x01, 0xC0, 0x49, 0x01, 0xD0,  // add r8, rax; add r8, rdx
            0x48, 0xF7, 0xD8, 0x48, 0x99,  // neg rax; cqo
            0x48, 0xF7, 0xFF,  // idiv rdi
            0x49, 0x01, 0xC0, 0x49, 0x01, 0xD0,  // add r8, rax; add r8, rdx
            0x89, 0xC8, 0x99,  // mov eax, ecx; cdq
            0xF7, 0x3E,  // idiv dword [rsi] (-3)
            0x49, 0x01, 0xC0,  // add r8, rax
            0x31, 0xD2, 0x89, 0xC8,  // xor edx, edx; mov eax, ecx
            0xF7, 0x76, 0x08,  // div dword [rsi+8] (10)
            0x49, 0x01, 0xD0,  // add r8, rdx
            0x48, 0x0F, 0xC8, 0x49, 0x01, 0xC0,  // bswap rax; add r8, rax
            0x41, 0x0F, 0xC8,  // bswap r8d
            0xBA, 0x01, 0x00, 0x00, 0x00,  // mov edx, 1
            0x48, 0xF7, 0xF6,  // div rsi (high half 1: interpreted)
            0x49, 0x01, 0xC0,  // add r8, rax
            0xFF, 0xC9, 0x75, 0xB3,  // dec ecx; jnz loop
            0xF4,  // hlt
        ]
        let (_, translated, stop) = try Self.compare(
            code,
            setup: { machine in
                try machine.memory.writeValue(UInt32(bitPattern: -3), at: Self.data)
                try machine.memory.writeValue(UInt32(10), at: Self.data + 8)
            })
        #expect(stop == .halt)
        let cache = try #require(translated.cpu.translation)
        #expect(cache.instructionsInBlocks >= 1500, "the divides and byte swaps ran as host code")
    }

    /// A 32-bit div that faults on the 51st pass of a translated loop, its divisor reaching zero
    /// or its high half (EDX) reaching the divisor (a quotient too wide): #DE is raised at that
    /// div with the earlier passes done, as interpreted (hvbench must not take the host's SIGFPE).
    @Test(arguments: [false, true])
    func aDivideErrorInTheMiddleOfABlockIsPrecise(_ overflow: Bool) throws {
        let zeroDivisor: [UInt8] = [
            0xB9, 0x3C, 0x00, 0x00, 0x00,  // mov ecx, 60
            0xBF, 0xE8, 0x03, 0x00, 0x00,  // mov edi, 1000
            0x45, 0x31, 0xC0,  // xor r8d, r8d
            0xB8, 0x39, 0x30, 0x00, 0x00,  // loop: mov eax, 12345
            0x31, 0xD2,  // xor edx, edx
            0xF7, 0xF7,  // div edi
            0x49, 0x01, 0xC0,  // add r8, rax
            0x83, 0xEF, 0x14,  // sub edi, 20
            0xFF, 0xC9, 0x75, 0xED,  // dec ecx; jnz loop
            0xF4,  // hlt (never reached)
        ]
        let wideQuotient: [UInt8] = [
            0xB9, 0x3C, 0x00, 0x00, 0x00,  // mov ecx, 60
            0xBF, 0xE8, 0x03, 0x00, 0x00,  // mov edi, 1000
            0x45, 0x31, 0xC0, 0x45, 0x31, 0xC9,  // xor r8d, r8d; xor r9d, r9d
            0xB8, 0x39, 0x30, 0x00, 0x00,  // loop: mov eax, 12345
            0x44, 0x89, 0xCA,  // mov edx, r9d
            0xF7, 0xF7,  // div edi
            0x49, 0x01, 0xC0,  // add r8, rax
            0x41, 0x83, 0xC1, 0x14,  // add r9d, 20
            0xFF, 0xC9, 0x75, 0xEB,  // dec ecx; jnz loop
            0xF4,  // hlt (never reached)
        ]
        let (_, translated, stop) = try Self.compare(
            overflow ? wideQuotient : zeroDivisor,
            setup: { machine in
                try machine.memory.write([0xF4], at: Self.handler)
                try machine.installGate(0, handler: Self.handler)
            })
        #expect(stop == .halt)
        #expect(translated.cpu.rip == Self.handler + 1, "#DE delivered")
        #expect(translated.cpu.registers[1] == 10, "after 50 passes")
        let cache = try #require(translated.cpu.translation)
        #expect(cache.instructionsInBlocks >= 200)
    }

    /// Locked read-modify-writes on memory (lock add, inc, xor with an immediate, xadd, cmpxchg
    /// that succeeds and fails, neg of a byte, dec of a word) and xchg with memory, in a 100-pass
    /// loop whose registers carry each result into the next.
    @Test func lockedReadModifyWritesGiveTheInterpretersState() throws {
        let code: [UInt8] = [
            0xB9, 0x64, 0x00, 0x00, 0x00,  // mov ecx, 100
            0x48, 0xC7, 0xC6, 0x00, 0x00, 0x02, 0x00,  // mov rsi, 0x20000
            0x31, 0xC0,  // xor eax, eax
            0xF0, 0x48, 0x01, 0x0E,  // loop: lock add [rsi], rcx
            0xF0, 0x48, 0xFF, 0x46, 0x08,  // lock inc qword [rsi+8]
            0xF0, 0x83, 0x76, 0x10, 0x5A,  // lock xor dword [rsi+0x10], 0x5a
            0x48, 0x89, 0xCA,  // mov rdx, rcx
            0xF0, 0x48, 0x0F, 0xC1, 0x56, 0x18,  // lock xadd [rsi+0x18], rdx
            0x48, 0x01, 0xD0,  // add rax, rdx
            0x48, 0x87, 0x46, 0x20,  // xchg [rsi+0x20], rax
            0x48, 0x89, 0xC3,  // mov rbx, rax
            0x48, 0x8B, 0x46, 0x28,  // mov rax, [rsi+0x28]
            0x48, 0x8D, 0x51, 0x01,  // lea rdx, [rcx+1]
            0xF0, 0x48, 0x0F, 0xB1, 0x56, 0x28,  // lock cmpxchg [rsi+0x28], rdx (succeeds)
            0xF0, 0x0F, 0xB1, 0x56, 0x30,  // lock cmpxchg [rsi+0x30], edx (mostly fails)
            0x48, 0x01, 0xC3,  // add rbx, rax
            0xF0, 0xF6, 0x5E, 0x38,  // lock neg byte [rsi+0x38]
            0xF0, 0x66, 0xFF, 0x4E, 0x3A,  // lock dec word [rsi+0x3a]
            0x48, 0x89, 0xD8,  // mov rax, rbx
            0xFF, 0xC9, 0x75, 0xB9,  // dec ecx; jnz loop
            0xF4,  // hlt
        ]
        let (_, translated, stop) = try Self.compare(
            code, setup: { machine in try machine.memory.writeValue(UInt8(7), at: Self.data + 0x38) })
        #expect(stop == .halt)
        let cache = try #require(translated.cpu.translation)
        #expect(cache.instructionsInBlocks >= 1500, "the locked instructions ran as host code")
    }

    /// A store to a page that is not present, after instructions of the same block: the fault
    /// is raised at that store with the block's earlier work done and CR2 set, as interpreted.
    @Test func aPageFaultInTheMiddleOfABlockIsPrecise() throws {
        let code: [UInt8] = [
            0xB8, 0x01, 0x00, 0x00, 0x00,  // mov eax, 1
            0xBB, 0x02, 0x00, 0x00, 0x00,  // mov ebx, 2
            0x48, 0xC7, 0xC6, 0x00, 0x00, 0x03, 0x00,  // mov rsi, 0x30000 (not present)
            0x01, 0xD8,  // add eax, ebx
            0x48, 0x89, 0x06,  // mov [rsi], rax: #PF
            0xB9, 0x09, 0x00, 0x00, 0x00, 0xF4,  // mov ecx, 9; hlt (never reached)
        ]
        let (_, translated, stop) = try Self.compare(
            code,
            setup: { machine in
                try machine.memory.write([0xF4], at: Self.handler)
                try machine.installGate(14, handler: Self.handler)
                try machine.setPTE(0x30, 0)
            })
        #expect(stop == .halt)
        #expect(translated.cpu.cr2 == 0x30000)
        #expect(translated.cpu.registers[0] == 3 && translated.cpu.registers[1] == 0)
        #expect(translated.cpu.rip == Self.handler + 1)
    }

    /// An MMIO store after register work in one block: the VMM gets the access with the
    /// registers as the interpreter leaves them, RIP at the store.
    @Test func mmioInTheMiddleOfABlockExitsAtTheAccess() throws {
        let code: [UInt8] = [
            0xB8, 0x05, 0x00, 0x00, 0x00,  // mov eax, 5
            0xBF, 0x00, 0x00, 0x00, 0xC0,  // mov edi, 0xC0000000 (device space)
            0x01, 0xC0,  // add eax, eax
            0x89, 0x07,  // mov [rdi], eax
            0xF4,
        ]
        let (_, translated, stop) = try Self.compare(code)
        #expect(stop == .deviceAccess)
        #expect(translated.cpu.rip == LongModeMachine.codeAddress + 12)
        #expect(translated.cpu.registers[0] == 10)
    }

    /// Code that rewrites an instruction of the block it is running (the store leaves the block;
    /// the next pass is translated again from the new bytes).
    @Test func codeThatRewritesItsOwnBlockRunsTheNewBytes() throws {
        // 0: mov eax,1 / 5: mov byte [rip-11],2 (patches the imm of 0) / inc ecx / cmp ecx,2 / jne 0 / hlt
        let code: [UInt8] = [
            0xB8, 1, 0, 0, 0, 0xC6, 0x05, 0xF5, 0xFF, 0xFF, 0xFF, 2, 0xFF, 0xC1, 0x83, 0xF9, 2, 0x75, 0xED, 0xF4,
        ]
        let (_, translated, stop) = try Self.compare(code)
        #expect(stop == .halt)
        #expect(translated.cpu.registers[0] == 2, "the second pass executed the patched immediate")
    }

    /// A loop made of the bytes inside a mov's immediate, entered by a jump into the middle of
    /// the mov, which later runs as itself.
    @Test func aJumpIntoTheMiddleOfAnInstructionDecodesFromThere() throws {
        let code: [UInt8] = [
            0xB9, 0x05, 0x00, 0x00, 0x00, 0xEB, 0x01, 0xB8, 0xFF, 0xC9, 0x75, 0xFC, 0x85, 0xD2, 0x75, 0x04, 0xFF, 0xC2,
            0xEB, 0xF3, 0xF4,
        ]
        let (_, translated, stop) = try Self.compare(code)
        #expect(stop == .halt)
        #expect(translated.cpu.registers[0] == 0xFC75_C9FF && translated.cpu.registers[1] == 0)
    }

    /// An indirect jump to device space: the translated block ends there and the interpreter
    /// reports what it always does for code outside RAM.
    @Test func codeOutsideRAMStopsAsInterpreted() throws {
        let code: [UInt8] = [0xB8, 0x00, 0x00, 0x00, 0xC0, 0xFF, 0xE0]  // mov eax, 0xC0000000; jmp rax
        let (_, _, stop) = try Self.compare(code)
        #expect(stop != .halt)
    }

    /// An endless loop without exits ends at the instruction budget (how the VMM's watchdog and
    /// stop requests get the vCPU back), and a stop request is honoured inside it.
    @Test func anEndlessLoopStillStops() throws {
        let spin: [UInt8] = [0xFF, 0xC0, 0xEB, 0xFC]  // inc eax; jmp -4
        let (_, translated, stop) = try Self.compare(spin, budget: 1_000_001)
        #expect(stop == .interrupted)
        #expect(translated.cpu.retired == 1_000_001)
        let machine = try LongModeMachine(code: spin)
        machine.cpu.translation = TranslationCache()
        machine.cpu.requestStop()
        #expect(machine.cpu.run(maxInstructions: Int.max) == .interrupted)
    }

    /// 3000 distinct blocks, run 10 times, through a 64 KiB code cache: it empties itself when
    /// full (hvbench never grows it), results are unchanged, and no page of it is writable and
    /// executable.
    @Test func theCodeCacheIsBoundedAndNeverWritableAndExecutable() throws {
        // mov ecx, 10; 3000 x (add eax, 1; jnz +0): each jnz ends a block; dec ecx; jnz back; hlt.
        let block: [UInt8] = [0x83, 0xC0, 0x01, 0x75, 0x00]
        var code: [UInt8] = [0xB9, 0x0A, 0x00, 0x00, 0x00]
        for _ in 0..<3000 { code += block }
        let back = -(3000 * 5 + 8)  // from the end of the 6-byte jnz back to offset 5
        code += [0xFF, 0xC9, 0x0F, 0x85] + withUnsafeBytes(of: Int32(back).littleEndian, Array.init) + [0xF4]
        let (_, translated, stop) = try Self.compare(code, budget: 1_000_000, cache: { TranslationCache(codeBytes: 64 << 10) })
        #expect(stop == .halt)
        #expect(translated.cpu.registers[0] == 30000)
        let cache = try #require(translated.cpu.translation)
        #expect(cache.cacheResets > 0)
        #expect(cache.blocksTranslated >= 3000, "every block got hot and was translated")
        #expect(!cache.memory.hasWritableExecutablePage)
    }

    /// 200 passes over four blocks: conditional exits linked to their targets, an indirect
    /// `jmp rdx` found through the table from host code, and a `push; ret` (a return no call
    /// predicted).
    static let chainedBlocks: [UInt8] = [
        0xB9, 0xC8, 0x00, 0x00, 0x00,  // 0: mov ecx, 200
        0x48, 0x8D, 0x15, 0x0C, 0x00, 0x00, 0x00,  // 5: lea rdx, [rip + 12] (= 24)
        0x01, 0xC8,  // 12: add eax, ecx
        0xF6, 0xC1, 0x01,  // 14: test cl, 1
        0x74, 0x03,  // 17: jz 22
        0xFF, 0xC3,  // 19: inc ebx
        0x90,  // 21: nop
        0xFF, 0xE2,  // 22: jmp rdx
        0xFF, 0xC9,  // 24: dec ecx
        0x75, 0xF0,  // 26: jnz 12
        0x68, 0x22, 0x00, 0x01, 0x00,  // 28: push 0x10022
        0xC3,  // 33: ret (to 34)
        0xF4,  // 34: hlt
    ]

    @Test func linkedBlocksAndIndirectJumpsGiveTheInterpretersState() throws {
        let (_, translated, stop) = try Self.compare(Self.chainedBlocks)
        #expect(stop == .halt)
        #expect(translated.cpu.registers[0] == 20100 && translated.cpu.registers[3] == 100)
        let cache = try #require(translated.cpu.translation)
        #expect(cache.linksMade >= 3, "the conditional exits were linked")
        #expect(cache.instructionsInBlocks >= 1000)
        #expect(!cache.memory.hasWritableExecutablePage)
    }

    /// Budgets that end inside chains of linked blocks stop at the interpreter's instruction.
    @Test(arguments: [1, 2, 7, 50, 333, 1000, 1401])
    func aBudgetEndsInsideLinkedBlocksExactly(_ budget: Int) throws {
        let (_, translated, stop) = try Self.compare(Self.chainedBlocks, budget: budget)
        #expect(stop == .interrupted)
        #expect(translated.cpu.retired == UInt64(budget))
    }

    /// Five loads in a row from a page that is not present: each faults, and the handler
    /// (itself translated up to its iretq) skips the load. Every fault is precise: same RIPs,
    /// CR2, fault count and retired count as interpreted.
    @Test func aBlockWhoseEveryInstructionFaultsBehavesAsInterpreted() throws {
        let load: [UInt8] = [0x48, 0x8B, 0x06]  // mov rax, [rsi]
        var code: [UInt8] = [0x48, 0xC7, 0xC6, 0x00, 0x00, 0x03, 0x00]  // mov rsi, 0x30000 (not present)
        for _ in 0..<5 { code += load }
        code += [0xF4]
        let handler: [UInt8] = [
            0x49, 0xFF, 0xC7,  // inc r15: faults seen
            0x48, 0x83, 0x44, 0x24, 0x08, 0x03,  // add qword [rsp+8], 3: resume after the load
            0x48, 0x83, 0xC4, 0x08,  // add rsp, 8: drop the error code
            0x48, 0xCF,  // iretq
        ]
        let (_, translated, stop) = try Self.compare(
            code,
            setup: { machine in
                try machine.memory.write(handler, at: Self.handler)
                try machine.installGate(14, handler: Self.handler)
                try machine.setPTE(0x30, 0)
            })
        #expect(stop == .halt)
        #expect(translated.cpu.registers[15] == 5)
        #expect(translated.cpu.cr2 == 0x30000)
    }

    /// A loop whose blocks straddle a page boundary (one instruction crosses it): traces and
    /// links across pages, the pages recorded for invlpg, the interpreter's results.
    @Test func blocksAndLinksAcrossAPageBoundary() throws {
        var code = [UInt8](repeating: 0x90, count: 0x1010)
        code.replaceSubrange(0..<10, with: [0xB9, 0x2C, 0x01, 0x00, 0x00, 0xE9, 0xEE, 0x0F, 0x00, 0x00])  // mov ecx, 300; jmp 0xFF8
        code.replaceSubrange(
            0xFF8..<0x100A,
            with: [
                0x01, 0xC8,  // 0xFF8: add eax, ecx
                0x89, 0x06,  // 0xFFA: mov [rsi], eax
                0xFF, 0xC2,  // 0xFFC: inc edx
                0xF6, 0xC1, 0x01,  // 0xFFE: test cl, 1 (crosses into the next page)
                0x74, 0x02,  // 0x1001: jz 0x1005
                0xFF, 0xC3,  // 0x1003: inc ebx
                0xFF, 0xC9,  // 0x1005: dec ecx
                0x75, 0xEF,  // 0x1007: jnz 0xFF8
                0xF4,  // 0x1009: hlt
            ])
        let (_, translated, stop) = try Self.compare(
            code, setup: { machine in machine.cpu.registers[6] = Self.data })
        #expect(stop == .halt)
        #expect(translated.cpu.registers[0] == 45150 && translated.cpu.registers[3] == 150)
        let cache = try #require(translated.cpu.translation)
        #expect(cache.linksMade >= 2, "exits linked across the page boundary")
        #expect(cache.instructionsInBlocks >= 1500)
        let codePage = LongModeMachine.codeAddress >> 12
        #expect(translated.cpu.codeLinearPages.isSuperset(of: [codePage, codePage + 1]))
    }
}
