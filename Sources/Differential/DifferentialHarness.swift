import Machine
import X86

/// One differential test case: a short instruction sequence with its starting state.
public struct DifferentialCase: Sendable, Equatable {
    /// Instruction bytes, ending with the harness's terminator (`call [returnSlot]`).
    public var code: [UInt8]
    /// rax ... r15 at entry (rsp and rbx point into the case's data block).
    public var registers: [UInt64]
    /// RFLAGS at entry (arithmetic flags and DF; IOPL=3, reserved bit 1).
    public var rflags: UInt64
    /// The case's 1 KiB data block (memory operands and stack) at entry.
    public var data: [UInt8]
    /// RFLAGS bits whose final value is architecturally defined for this sequence.
    public var flagMask: UInt64
    /// Mnemonic-level description, e.g. "add r/m32,r; jcc".
    public var description: String
    /// Where its code and data live (`codeAddress(ofCase:)`, `dataAddress(ofCase:)`): the case's
    /// addresses are part of its starting state, so it always runs in the same slot.
    public var slot: Int
}

/// What a case left behind: completed (registers, flags, final RIP, memory) or faulted.
public struct DifferentialOutcome: Sendable, Equatable {
    /// 1 when the sequence ran to its terminator; 0x100 + vector when it raised an exception.
    public var status: UInt64
    public var registers: [UInt64]
    public var rflags: UInt64
    /// Address just after the terminator that ended the sequence (its path through branches).
    public var finalRIP: UInt64
    public var data: [UInt8]

    public init(status: UInt64, registers: [UInt64], rflags: UInt64, finalRIP: UInt64, data: [UInt8]) {
        self.status = status
        self.registers = registers
        self.rflags = rflags
        self.finalRIP = finalRIP
        self.data = data
    }
}

/// The test kernel both engines run: it switches to long mode, installs a GDT/IDT/TSS and an
/// identity map (1 GiB, 2 MiB pages, user-accessible), drops to CPL3 with IOPL=3 and runs every
/// case from its starting state, storing what the case left behind; a fault in a case is caught
/// by the IDT, recorded with its vector, and the next case runs. It exits through port 0xF4.
///
/// Memory (guest-physical = linear): the kernel at 1 MiB (Multiboot), tables at 2 MiB, case
/// records at 3 MiB, case code at 16 MiB (256 bytes each), data blocks at 32 MiB (1 KiB each).
public enum DifferentialHarness {
    public static let memoryMiB = 64
    public static let maximumCases = 16_384

    static let kernelBase: UInt32 = 0x10_0000
    static let gdt: UInt32 = 0x20_0000
    static let gdtPointer: UInt32 = 0x20_0100
    static let idtPointer: UInt32 = 0x20_0200
    static let tss: UInt32 = 0x20_1000
    static let tssLimit: UInt32 = 0x68 + 8192
    static let idt: UInt32 = 0x20_4000
    static let pml4: UInt32 = 0x20_5000
    static let pdpt: UInt32 = 0x20_6000
    static let pageDirectory: UInt32 = 0x20_7000
    static let variables: UInt32 = 0x20_A000
    static let currentCase = variables
    static let caseCount = variables + 8
    static let currentRecord = variables + 16
    static let jumpSlot = variables + 24
    static let scratch0 = variables + 32
    static let scratch1 = variables + 40
    static let faultVector = variables + 48
    public static let returnSlot = variables + 56
    static let runnerStackTop: UInt32 = 0x20_C000
    static let interruptStackTop: UInt32 = 0x20_E000
    static let records: UInt32 = 0x30_0000
    static let recordSize: UInt32 = 512
    public static let codeBase: UInt64 = 0x100_0000
    public static let codeStride: UInt64 = 256
    public static let dataBase: UInt64 = 0x200_0000
    public static let dataSize: UInt64 = 1024

    // Record layout.
    static let inputRegisters: Int32 = 0
    static let inputFlags: Int32 = 128
    static let codeAddress: Int32 = 136
    static let statusOffset: Int32 = 144
    static let outputRegisters: Int32 = 152
    static let outputFlags: Int32 = 280
    static let outputRIP: Int32 = 288

    public static func codeAddress(ofCase index: Int) -> UInt64 { codeBase + UInt64(index) * codeStride }
    public static func dataAddress(ofCase index: Int) -> UInt64 { dataBase + UInt64(index) * dataSize }

    /// The Multiboot v1 kernel image (header + code), loaded at 1 MiB.
    public static func kernelImage() -> [UInt8] {
        let (code, _, _) = assemble()
        let magic: UInt32 = 0x1BAD_B002
        let flags: UInt32 = 1 << 16
        let header: [UInt32] = [magic, flags, 0 &- (magic &+ flags), kernelBase, kernelBase, 0, 0, kernelBase + 32]
        return header.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) } + code
    }

    /// iretq to CPL3 (user code 0x23, data 0x1B) on the runner's stack with IOPL=3 and interrupts
    /// off; returns the offset of the `push imm32` whose immediate is the target, patched later.
    private static func returnToUserMode(_ asm: inout MiniAssembler) -> Int {
        asm.emit(0x6A, 0x1B)
        asm.push(immediate: Int32(runnerStackTop))
        asm.push(immediate: 0x3002)
        asm.emit(0x6A, 0x23)
        let target = asm.bytes.count
        asm.push(immediate: 0)
        asm.emit(0x48, 0xCF)
        return target
    }

    /// Assembles the kernel; returns its code, the case-return entry and the exception stubs.
    static func assemble() -> (code: [UInt8], caseReturn: UInt64, stubs: [UInt64]) {
        var asm = MiniAssembler(origin: UInt64(kernelBase) + 32)
        // 32-bit protected mode, paging off: enable PAE, load CR3, set EFER.LME|SCE, paging on.
        asm.emit(0x0F, 0x20, 0xE0, 0x0D, 0x20, 0x06, 0x00, 0x00, 0x0F, 0x22, 0xE0)  // cr4 |= PAE | OSFXSR | OSXMMEXCPT
        asm.emit(0xB8)
        asm.u32(pml4)
        asm.emit(0x0F, 0x22, 0xD8)  // mov cr3, eax
        asm.emit(0xB9)
        asm.u32(0xC000_0080)
        asm.emit(0x0F, 0x32, 0x0D)
        asm.u32(0x101)
        asm.emit(0x0F, 0x30)  // EFER |= LME | SCE
        asm.emit(0x0F, 0x01, 0x15)
        asm.u32(gdtPointer)  // lgdt
        asm.emit(0x0F, 0x20, 0xC0, 0x0D)
        asm.u32(0x8001_0023)
        asm.emit(0x0F, 0x22, 0xC0)  // cr0 |= PG | WP | NE | MP | PE (x87 errors as #MF)
        let farJump = asm.bytes.count
        asm.emit(0xEA, 0, 0, 0, 0, 0x08, 0x00)  // ljmp 0x08:long_mode (patched below)
        let longMode = asm.here
        asm.emit(0x66, 0xB8, 0x10, 0x00, 0x8E, 0xD8, 0x8E, 0xC0, 0x8E, 0xD0)  // ds = es = ss = 0x10
        asm.emit(0x0F, 0x01, 0x1C, 0x25)
        asm.u32(idtPointer)  // lidt
        asm.emit(0x66, 0xB8, 0x28, 0x00, 0x0F, 0x00, 0xD8)  // ltr 0x28
        // iretq to the runner at CPL3 with IOPL=3, interrupts off (frame on the interrupt stack).
        asm.move(4, immediate: Int32(interruptStackTop))
        let runnerPush = returnToUserMode(&asm)

        // Exception stubs (CPL0): record the vector and iretq to the runner's abort path.
        var stubs: [UInt64] = []
        for vector in 0..<32 {
            stubs.append(asm.here)
            asm.emit(0x6A, UInt8(vector))
            asm.jump("faultCommon")
        }
        asm.label("faultCommon")
        asm.pop(0)
        asm.store(absolute: faultVector, 0)
        let abortPush = returnToUserMode(&asm)

        // The runner (CPL3).
        asm.label("runner")
        asm.label("nextCase")
        asm.load(0, absolute: currentCase)
        asm.compare(0, absolute: caseCount)
        asm.jumpIfAboveOrEqual("done")
        asm.multiply(3, 0, immediate: Int32(recordSize))
        asm.add(3, immediate: Int32(records))
        asm.store(absolute: currentRecord, 3)
        asm.load(0, base: 3, codeAddress)
        asm.store(absolute: jumpSlot, 0)
        asm.load(4, base: 3, inputRegisters + 32)
        asm.push(base: 3, inputFlags)
        asm.emit(0x9D)  // popfq
        for register in UInt8(0)...15 where register != 3 && register != 4 {
            asm.load(register, base: 3, inputRegisters + Int32(register) * 8)
        }
        asm.load(3, base: 3, inputRegisters + 24)
        asm.jump(absoluteIndirect: jumpSlot)

        asm.label("caseReturn")
        asm.store(absolute: scratch0, 0)
        asm.emit(0x9C)  // pushfq
        asm.pop(0)
        asm.store(absolute: scratch1, 0)
        asm.load(0, absolute: currentRecord)
        for register in UInt8(1)...15 {
            asm.store(base: 0, outputRegisters + Int32(register) * 8, register)
        }
        asm.load(1, absolute: scratch0)
        asm.store(base: 0, outputRegisters, 1)
        asm.load(1, absolute: scratch1)
        asm.store(base: 0, outputFlags, 1)
        asm.load(1, base: 4, 0)
        asm.store(base: 0, outputRIP, 1)
        asm.storeImmediate(base: 0, statusOffset, 1)
        asm.jump("advance")

        asm.label("caseAbort")
        asm.load(0, absolute: currentRecord)
        asm.load(1, absolute: faultVector)
        asm.add(1, immediate: 0x100)
        asm.store(base: 0, statusOffset, 1)
        asm.label("advance")
        asm.incrementQword(absolute: currentCase)
        asm.move(4, immediate: Int32(runnerStackTop))
        asm.emit(0xFC)  // cld
        asm.jump("nextCase")

        asm.label("done")
        asm.emit(0xBA, 0xF4, 0, 0, 0, 0xB0, 0x00, 0xEE, 0xEB, 0xFE)  // out 0xF4, 0; spin
        var code = asm.finish()
        func patch32(_ offset: Int, _ value: UInt32) {
            withUnsafeBytes(of: value.littleEndian) { raw in for index in 0..<4 { code[offset + index] = raw[index] } }
        }
        patch32(farJump + 1, UInt32(longMode))
        patch32(runnerPush + 1, UInt32(asm.address(of: "runner")!))
        patch32(abortPush + 1, UInt32(asm.address(of: "caseAbort")!))
        return (code, asm.address(of: "caseReturn")!, stubs)
    }

    /// Writes the descriptor tables, page tables and the cases into guest memory (after the
    /// kernel image is loaded).
    public static func prepare(_ memory: GuestMemory, cases: [DifferentialCase]) throws {
        precondition(cases.count <= maximumCases)
        let (_, caseReturn, stubs) = assemble()
        // GDT: null, kernel code64, kernel data, user data, user code64, TSS (16 bytes).
        let descriptors: [UInt64] = [
            0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF, 0x00CF_F200_0000_FFFF, 0x00AF_FA00_0000_FFFF,
        ]
        for (index, value) in descriptors.enumerated() { try memory.writeValue(value, at: UInt64(gdt) + UInt64(index) * 8) }
        let tssLow: UInt64 =
            UInt64(tssLimit & 0xFFFF) | (UInt64(tss & 0xFF_FFFF) << 16) | (0x89 << 40) | (UInt64((tssLimit >> 16) & 0xF) << 48)
            | (UInt64(tss >> 24) << 56)
        try memory.writeValue(tssLow, at: UInt64(gdt) + 0x28)
        try memory.writeValue(UInt64(0), at: UInt64(gdt) + 0x30)
        try memory.writeValue(UInt16(0x37), at: UInt64(gdtPointer))
        try memory.writeValue(gdt, at: UInt64(gdtPointer) + 2)
        // TSS: RSP0, an all-zero I/O permission bitmap (+ terminator).
        try memory.writeValue(UInt64(interruptStackTop), at: UInt64(tss) + 4)
        try memory.writeValue(UInt16(0x68), at: UInt64(tss) + 0x66)
        try memory.write([UInt8](repeating: 0, count: 8192) + [0xFF], at: UInt64(tss) + 0x68)
        // IDT: 32 interrupt gates to the stubs.
        for (vector, stub) in stubs.enumerated() {
            let low: UInt64 = (stub & 0xFFFF) | (0x08 << 16) | (0x8E << 40) | ((stub >> 16) & 0xFFFF) << 48
            try memory.writeValue(low, at: UInt64(idt) + UInt64(vector) * 16)
            try memory.writeValue(stub >> 32, at: UInt64(idt) + UInt64(vector) * 16 + 8)
        }
        try memory.writeValue(UInt16(32 * 16 - 1), at: UInt64(idtPointer))
        try memory.writeValue(UInt64(idt), at: UInt64(idtPointer) + 2)
        // Identity map of the first GiB with 2 MiB pages, user-accessible and writable.
        try memory.writeValue(UInt64(pdpt) | 7, at: UInt64(pml4))
        try memory.writeValue(UInt64(pageDirectory) | 7, at: UInt64(pdpt))
        for entry in 0..<512 {
            try memory.writeValue(UInt64(entry) << 21 | 0x87, at: UInt64(pageDirectory) + UInt64(entry) * 8)
        }
        try memory.writeValue(UInt64(0), at: UInt64(currentCase))
        try memory.writeValue(UInt64(cases.count), at: UInt64(caseCount))
        try memory.writeValue(caseReturn, at: UInt64(returnSlot))
        for (index, testCase) in cases.enumerated() {
            let record = UInt64(records) + UInt64(index) * UInt64(recordSize)
            for (register, value) in testCase.registers.enumerated() {
                try memory.writeValue(value, at: record + UInt64(inputRegisters) + UInt64(register) * 8)
            }
            try memory.writeValue(testCase.rflags, at: record + UInt64(inputFlags))
            try memory.writeValue(codeAddress(ofCase: testCase.slot), at: record + UInt64(codeAddress))
            try memory.writeValue(UInt64(0), at: record + UInt64(statusOffset))
            precondition(testCase.code.count <= Int(codeStride))
            try memory.write(testCase.code, at: codeAddress(ofCase: testCase.slot))
            try memory.write(testCase.data, at: dataAddress(ofCase: testCase.slot))
        }
    }

    /// Reads back what each case left behind.
    public static func outcomes(_ memory: GuestMemory, cases: [DifferentialCase]) throws -> [DifferentialOutcome] {
        try cases.indices.map { index in
            let record = UInt64(records) + UInt64(index) * UInt64(recordSize)
            let registers = try (0..<16).map {
                try memory.readValue(UInt64.self, at: record + UInt64(outputRegisters) + UInt64($0) * 8)
            }
            return DifferentialOutcome(
                status: try memory.readValue(UInt64.self, at: record + UInt64(statusOffset)), registers: registers,
                rflags: try memory.readValue(UInt64.self, at: record + UInt64(outputFlags)),
                finalRIP: try memory.readValue(UInt64.self, at: record + UInt64(outputRIP)),
                data: comparableData(
                    try memory.read(at: dataAddress(ofCase: cases[index].slot), count: Int(dataSize)), slot: cases[index].slot,
                    finalRSP: registers[4]))
        }
    }

    /// The data block without the 8 bytes the harness's own `pushfq` wrote below the final stack
    /// pointer: they hold the whole RFLAGS, whose system bits (IF, IOPL) are the host's business
    /// (kvm_pvm runs CPL3 guests with IF=1, IOPL=0 whatever the guest set).
    static func comparableData(_ data: [UInt8], slot: Int, finalRSP: UInt64) -> [UInt8] {
        var data = data
        let block = dataAddress(ofCase: slot)
        if finalRSP >= block + 8 && finalRSP <= block + dataSize {
            let start = Int(finalRSP - block) - 8
            for index in start..<start + 8 { data[index] = 0 }
        }
        return data
    }

    public static func registerName(_ index: Int) -> String { registerNames[index] }

    static let registerNames = [
        "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    ]

    /// The differences between a reference outcome (KVM) and the emulator's, or [] when they agree
    /// on everything the case defines.
    public static func differences(expected: DifferentialOutcome, actual: DifferentialOutcome, flagMask: UInt64) -> [String] {
        func describe(_ status: UInt64) -> String {
            status == 1
                ? "completed"
                : status >= 0x100 ? "raised \(X86CPU.vectorName(UInt8(truncatingIfNeeded: status - 0x100)))" : "did not run"
        }
        guard expected.status == actual.status else {
            return ["status: expected \(describe(expected.status)), emulator \(describe(actual.status))"]
        }
        guard expected.status == 1 else { return [] }
        var found: [String] = []
        for index in 0..<16 where expected.registers[index] != actual.registers[index] {
            found.append(
                "\(registerNames[index]): expected 0x\(String(expected.registers[index], radix: 16)), emulator 0x\(String(actual.registers[index], radix: 16))"
            )
        }
        if expected.finalRIP != actual.finalRIP {
            found.append(
                "rip: expected 0x\(String(expected.finalRIP, radix: 16)), emulator 0x\(String(actual.finalRIP, radix: 16))")
        }
        if expected.rflags & flagMask != actual.rflags & flagMask {
            found.append(
                "rflags (mask 0x\(String(flagMask, radix: 16))): expected 0x\(String(expected.rflags & flagMask, radix: 16)), emulator 0x\(String(actual.rflags & flagMask, radix: 16))"
            )
        }
        if expected.data != actual.data {
            let first = zip(expected.data, actual.data).enumerated().first { $0.element.0 != $0.element.1 }!.offset
            found.append(
                "memory: first difference at data+\(first): expected 0x\(String(expected.data[first], radix: 16)), emulator 0x\(String(actual.data[first], radix: 16))"
            )
        }
        return found
    }
}
