import Machine
import X86

/// Any bytes as 64-bit code at CPL0 in a small identity-mapped machine, once interpreted and
/// once translated (translating at once): the decoder, the executor and the translator must turn
/// every byte string into instructions, exceptions or a stop, never a trap; neither may retire
/// more instructions than its budget, nor the translator count more of them in its blocks than
/// were retired.
enum X86Fuzz {
    static let codeAddress: UInt64 = 0x10000
    static let budget = 256
    /// One code cache for every input (emptied before each): creating one per input made the
    /// target 15 times slower under the sanitizers.
    nonisolated(unsafe) static let cache = TranslationCache(codeBytes: 1 << 20, hotAfter: 2)

    static func run(_ bytes: [UInt8]) -> FuzzProperty {
        if let problem = run(bytes, translate: false) { return problem }
        return run(bytes, translate: true)
    }

    static func run(_ bytes: [UInt8], translate: Bool) -> FuzzProperty {
        guard let memory = try? GuestMemory(size: 4 << 20) else { return "cannot allocate guest memory" }
        do {
            // PML4 at 0x1000 -> PDPT at 0x2000 -> PD at 0x3000: 2 MiB pages over the first 4 MiB.
            try memory.writeValue(UInt64(0x2000 | 7), at: 0x1000)
            try memory.writeValue(UInt64(0x3000 | 7), at: 0x2000)
            for index in 0..<2 { try memory.writeValue(UInt64(index) << 21 | 0x87, at: 0x3000 + UInt64(index) * 8) }
            try memory.writeValue(UInt64(0x00AF_9A00_0000_FFFF), at: 0x508)  // GDT at 0x500: 0x08 = code64
            try memory.write(Array(bytes.prefix(0x8000)), at: codeAddress)
        } catch { return "cannot lay out the test machine: \(error)" }
        let cpu = X86CPU(ram: memory.base, ramSize: memory.size, timestamp: { 0 })
        cpu.enterLongMode(
            rip: codeAddress, cr3: 0x1000, cpl: 0, codeSelector: 0x08, stackSelector: 0x10, gdtBase: 0x500, gdtLimit: 0xF)
        cpu.registers[4] = 0x80000
        let countedBefore = cache?.instructionsInBlocks ?? 0
        if translate, let cache {
            cache.forgetAll()
            cpu.translation = cache
        }
        _ = cpu.run(maxInstructions: budget)
        if let counted = cpu.translation?.instructionsInBlocks, counted - countedBefore > cpu.retired {
            let translated = counted - countedBefore
            return "\(translated) instructions counted in blocks, \(cpu.retired) retired"
        }
        if cpu.retired > UInt64(budget) {
            return "\(translate ? "translated" : "interpreted"): \(cpu.retired) instructions retired on a budget of \(budget)"
        }
        return nil
    }
}
