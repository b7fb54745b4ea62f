import Machine
import Testing

@testable import X86

@Suite struct TranslatorTests {
    /// cpu.int's loop (xorshift64 and a multiply-accumulate), 1000 passes, then hlt.
    static let integerLoop: [UInt8] = [
        0x48, 0xC7, 0xC2, 0xE8, 0x03, 0x00, 0x00, 0x48, 0xBE, 0x44, 0x7A, 0xBF, 0xCB, 0x8D, 0x40, 0x39, 0x01, 0x31, 0xC9,
        0x48, 0xB8, 0x15, 0x7C, 0x4A, 0x7F, 0xB9, 0x79, 0x37, 0x9E, 0x48, 0x89, 0xF7, 0x48, 0xC1, 0xE7, 0x0D, 0x48, 0x31,
        0xFE, 0x48, 0x89, 0xF7, 0x48, 0xC1, 0xEF, 0x07, 0x48, 0x31, 0xFE, 0x48, 0x89, 0xF7, 0x48, 0xC1, 0xE7, 0x11, 0x48,
        0x31, 0xFE, 0x48, 0x89, 0xF7, 0x48, 0x0F, 0xAF, 0xF8, 0x48, 0x01, 0xF9, 0x48, 0x89, 0xCF, 0x48, 0xC1, 0xEF, 0x1D,
        0x48, 0x31, 0xF9, 0x48, 0xFF, 0xCA, 0x75, 0xC9, 0xF4,
    ]

    static func state(_ cpu: X86CPU) -> [UInt64] { (0..<16).map { cpu.registers[$0] } + [cpu.rip, cpu.rflags, cpu.retired] }

    /// Translated at once, the block starts with the set-up and the loop's head is inside it
    /// (an inner loop); translated when hot, the loop is a block of its own.
    @Test(arguments: [1, 8])
    func aLoopRunsTranslatedWithTheInterpretersResults(translateAfter: Int) throws {
        try Self.expectTranslatedRunMatchesInterpreter(Self.integerLoop, translateAfter: translateAfter, inBlocks: 16_000)
    }

    /// Runs `code` to its hlt interpreted and translated; every register, RIP, RFLAGS and the
    /// retired count must match, with at least `inBlocks` instructions retired in host code.
    static func expectTranslatedRunMatchesInterpreter(_ code: [UInt8], translateAfter: Int, inBlocks: UInt64) throws {
        let interpreted = try LongModeMachine(code: code)
        let translated = try LongModeMachine(code: code)
        translated.cpu.translation = TranslationCache(hotAfter: translateAfter)
        #expect(interpreted.cpu.run(maxInstructions: 100_000) == .halt)
        #expect(translated.cpu.run(maxInstructions: 100_000) == .halt)
        #expect(state(translated.cpu) == state(interpreted.cpu))
        let cache = try #require(translated.cpu.translation)
        #expect(cache.instructionsInBlocks >= inBlocks, "the loop's passes ran as host code")
    }

    /// An instruction budget is met exactly, in the middle of a looping block too.
    @Test(arguments: [1, 5, 17, 1000, 12_345], [1, 8])
    func aBudgetStopsAtTheSameInstruction(_ budget: Int, translateAfter: Int) throws {
        let interpreted = try LongModeMachine(code: Self.integerLoop)
        let translated = try LongModeMachine(code: Self.integerLoop)
        translated.cpu.translation = TranslationCache(hotAfter: translateAfter)
        #expect(interpreted.cpu.run(maxInstructions: budget) == .interrupted)
        #expect(translated.cpu.run(maxInstructions: budget) == .interrupted)
        #expect(translated.cpu.retired == UInt64(budget))
        #expect(Self.state(translated.cpu) == Self.state(interpreted.cpu))
    }
    /// A loop over six guest registers (rax, rbx, rcx, rdx, rsi, rdi, r8: the block touches no
    /// memory, so six of them live in host registers) with 32- and 64-bit add, xor, sub, imul,
    /// inc, neg, not, shifts, cmp, cmovl, test, mov, and, or and adc: 32-bit results zero-extend
    /// in the host registers as in the guest's, and the flags match; 300 passes, then hlt.
    static let cachedRegisterLoop: [UInt8] = [
        0x48, 0xC7, 0xC1, 0x2C, 0x01, 0x00, 0x00, 0x48, 0xB8, 0xF0, 0xDE, 0xBC, 0x9A, 0x78, 0x56, 0x34, 0x12, 0x48, 0xBB,
        0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE, 0x48, 0xBE, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x0F, 0x48,
        0xC7, 0xC7, 0xFF, 0xFF, 0xFF, 0xFF, 0x49, 0xC7, 0xC0, 0x07, 0x00, 0x00, 0x00, 0x01, 0xD8, 0x31, 0xC6, 0x48, 0x29,
        0xF7, 0x0F, 0xAF, 0xDE, 0x41, 0xFF, 0xC0, 0x48, 0xF7, 0xDE, 0xF7, 0xD7, 0xC1, 0xE0, 0x03, 0x48, 0xC1, 0xFB, 0x05,
        0x39, 0xFE, 0x41, 0x0F, 0x4C, 0xC0, 0x85, 0xC3, 0x41, 0x89, 0xF8, 0x81, 0xE6, 0xFF, 0xFF, 0x07, 0x00, 0x48, 0x09,
        0xC7, 0x89, 0xDA, 0x48, 0x11, 0xF2, 0x48, 0xFF, 0xC9, 0x75, 0xC9, 0xF4,
    ]

    /// Instructions on cached guest registers run as one host instruction on them; the result
    /// is the interpreter's, every register and flag.
    @Test(arguments: [1, 8])
    func instructionsOnCachedRegistersMatchTheInterpreter(translateAfter: Int) throws {
        try Self.expectTranslatedRunMatchesInterpreter(
            Self.cachedRegisterLoop, translateAfter: translateAfter, inBlocks: 5_000)
    }
}
