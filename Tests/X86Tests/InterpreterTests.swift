import Glibc
import Machine
import Testing

@testable import X86

/// A 16 MiB long-mode machine: identity map with the first 2 MiB in 4 KiB pages (page table at
/// 0x4000) and the rest in 2 MiB pages, a GDT with a 64-bit code segment, code at 0x10000.
final class LongModeMachine {
    static let codeAddress: UInt64 = 0x10000
    static let pageTable: UInt64 = 0x4000
    let memory: GuestMemory
    let cpu: X86CPU

    init(code: [UInt8]) throws {
        memory = try GuestMemory(size: 16 << 20)
        try memory.writeValue(UInt64(0x2000 | 7), at: 0x1000)
        try memory.writeValue(UInt64(0x3000 | 7), at: 0x2000)
        try memory.writeValue(UInt64(0xC000_0000 | 0x87), at: 0x2000 + 3 * 8)  // 3-4 GiB: one 1 GiB page (device space)
        try memory.writeValue(UInt64(Self.pageTable | 7), at: 0x3000)
        for index in 1..<8 { try memory.writeValue(UInt64(index) << 21 | 0x87, at: 0x3000 + UInt64(index) * 8) }
        for index in 0..<512 { try memory.writeValue(UInt64(index) << 12 | 7, at: Self.pageTable + UInt64(index) * 8) }
        try memory.writeValue(UInt64(0x00AF_9A00_0000_FFFF), at: 0x508)  // GDT at 0x500: 0x08 = code64
        try memory.write(code, at: Self.codeAddress)
        cpu = X86CPU(ram: memory.base, ramSize: memory.size, timestamp: { 0 })
        cpu.enterLongMode(
            rip: Self.codeAddress, cr3: 0x1000, cpl: 0, codeSelector: 0x08, stackSelector: 0x10, gdtBase: 0x500, gdtLimit: 0xF)
        cpu.registers[4] = 0x80000
    }

    /// Points IDT vector `vector` at `handler` (an interrupt gate in code segment 0x08).
    func installGate(_ vector: Int, handler: UInt64) throws {
        let idt: UInt64 = 0x6000
        let low = (handler & 0xFFFF) | (0x08 << 16) | (0x8E << 40) | ((handler >> 16) & 0xFFFF) << 48
        try memory.writeValue(low, at: idt + UInt64(vector) * 16)
        try memory.writeValue(handler >> 32, at: idt + UInt64(vector) * 16 + 8)
        cpu.idtBase = idt
        cpu.idtLimit = 0xFFF
    }

    func pte(_ page: UInt64) throws -> UInt64 { try memory.readValue(UInt64.self, at: Self.pageTable + page * 8) }
    func setPTE(_ page: UInt64, _ value: UInt64) throws { try memory.writeValue(value, at: Self.pageTable + page * 8) }
}

@Suite struct InterpreterTests {
    @Test func selfModifyingCodeRunsTheNewBytes() throws {
        // 0: mov eax,1 / 5: mov byte [rip-11],2 (patches the imm of 0) / inc ecx / cmp ecx,2 / jne 0 / hlt
        let code: [UInt8] = [
            0xB8, 1, 0, 0, 0, 0xC6, 0x05, 0xF5, 0xFF, 0xFF, 0xFF, 2, 0xFF, 0xC1, 0x83, 0xF9, 2, 0x75, 0xED, 0xF4,
        ]
        let machine = try LongModeMachine(code: code)
        #expect(machine.cpu.run(maxInstructions: 1000) == .halt)
        #expect(machine.cpu.registers[0] == 2, "the second pass must execute the patched immediate")
        #expect(machine.cpu.registers[1] == 2)
    }

    /// Relative branches land relative to the end of the instruction (the decoder once read the
    /// end before the displacement for jmp and call, which the differential tests caught).
    @Test func relativeJumpsAndCallsLandAfterTheirDisplacement() throws {
        // 0: jmp +2 (EB 02) / 2: hlt hlt / 4: jmp rel32 +1 (E9 01 00 00 00) / 9: hlt /
        // 10: call rel32 +1 (E8 01 00 00 00) / 15: hlt / 16: mov eax, 7 / 21: hlt
        let code: [UInt8] = [
            0xEB, 0x02, 0xF4, 0xF4, 0xE9, 0x01, 0x00, 0x00, 0x00, 0xF4, 0xE8, 0x01, 0x00, 0x00, 0x00, 0xF4, 0xB8, 7, 0, 0, 0,
            0xF4,
        ]
        let machine = try LongModeMachine(code: code)
        #expect(machine.cpu.run(maxInstructions: 100) == .halt)
        #expect(machine.cpu.registers[0] == 7)
        #expect(machine.cpu.rip == LongModeMachine.codeAddress + 22, "halted at the last hlt")
        let pushed = try machine.memory.readValue(UInt64.self, at: machine.cpu.registers[4])
        #expect(pushed == LongModeMachine.codeAddress + 15, "call pushed the address after itself")
    }

    @Test func pageFaultDeliversErrorCodeAndCR2() throws {
        // mov rax, [0x123456] with that page not present; the #PF handler is a hlt.
        let code: [UInt8] = [0x48, 0x8B, 0x04, 0x25, 0x56, 0x34, 0x12, 0x00, 0xF4, 0xF4]
        let machine = try LongModeMachine(code: code)
        try machine.installGate(14, handler: LongModeMachine.codeAddress + 9)
        try machine.setPTE(0x123, 0)
        #expect(machine.cpu.run(maxInstructions: 100) == .halt)
        #expect(machine.cpu.cr2 == 0x123456)
        let stack = machine.cpu.registers[4]
        #expect(try machine.memory.readValue(UInt64.self, at: stack) == 0, "error code: not present, read, supervisor")
        #expect(try machine.memory.readValue(UInt64.self, at: stack + 8) == LongModeMachine.codeAddress, "faulting rip")
    }

    @Test func writesToAReadOnlyPageFaultWithProtectionErrorCode() throws {
        // mov [0x200000 - 8], rax on a read-only page with CR0.WP=1: #PF error code P|W = 3.
        let code: [UInt8] = [0x48, 0x89, 0x04, 0x25, 0xF8, 0xFF, 0x1F, 0x00, 0xF4, 0xF4]
        let machine = try LongModeMachine(code: code)
        try machine.installGate(14, handler: LongModeMachine.codeAddress + 9)
        try machine.setPTE(0x1FF, 0x1FF000 | 5)
        #expect(machine.cpu.run(maxInstructions: 100) == .halt)
        #expect(try machine.memory.readValue(UInt64.self, at: machine.cpu.registers[4]) == 3)
    }

    @Test func accessedAndDirtyBitsAreSet() throws {
        // mov rax, [0x20000]; mov [0x21000], rax; hlt
        let code: [UInt8] = [
            0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x02, 0x00, 0x48, 0x89, 0x04, 0x25, 0x00, 0x10, 0x02, 0x00, 0xF4,
        ]
        let machine = try LongModeMachine(code: code)
        #expect(machine.cpu.run(maxInstructions: 100) == .halt)
        #expect(try machine.pte(0x20) & 0x60 == 0x20, "read: accessed, not dirty")
        #expect(try machine.pte(0x21) & 0x60 == 0x60, "write: accessed and dirty")
    }

    @Test func invlpgMakesAChangedMappingVisible() throws {
        // mov rax,[0x30000]; (PTE changed here by the test); mov rbx,[0x30000]; invlpg [0x30000]; mov rcx,[0x30000]; hlt
        let read: (UInt8) -> [UInt8] = { [0x48, 0x8B, 0x04 | ($0 << 3), 0x25, 0x00, 0x00, 0x03, 0x00] }
        let code = read(0) + [0xF4] + read(3) + [0x0F, 0x01, 0x3C, 0x25, 0x00, 0x00, 0x03, 0x00] + read(1) + [0xF4]
        let machine = try LongModeMachine(code: code)
        try machine.memory.writeValue(UInt64(0xAAAA), at: 0x30000)
        try machine.memory.writeValue(UInt64(0xBBBB), at: 0x31000)
        #expect(machine.cpu.run(maxInstructions: 100) == .halt)
        try machine.setPTE(0x30, 0x31000 | 7)
        #expect(machine.cpu.run(maxInstructions: 100) == .halt)
        #expect(machine.cpu.registers[0] == 0xAAAA)
        #expect(machine.cpu.registers[3] == 0xAAAA, "before invlpg the TLB may keep the old translation")
        #expect(machine.cpu.registers[1] == 0xBBBB, "after invlpg the new one is used")
    }

    @Test func mmioReadStopsAndCompletesWithTheVMMsData() throws {
        // mov eax, [dword 0xF0000000] (outside RAM, through a 1 GiB page) twice: each read is one device exit.
        let read: [UInt8] = [0x67, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x00, 0xF0]
        let code: [UInt8] = read + [0x89, 0xC3] + read + [0xF4]
        let machine = try LongModeMachine(code: code)
        for value: UInt32 in [0x1234_5678, 0x9ABC_DEF0] {
            #expect(machine.cpu.run(maxInstructions: 100) == .deviceAccess)
            let access = try #require(machine.cpu.pendingDeviceAccess)
            #expect(access.kind == .mmio && access.address == 0xF000_0000 && access.size == 4 && !access.isWrite)
            (machine.cpu.deviceLog.buffer + access.offset).storeBytes(of: value, as: UInt32.self)
        }
        #expect(machine.cpu.run(maxInstructions: 100) == .halt)
        #expect(machine.cpu.registers[3] == 0x1234_5678)
        #expect(machine.cpu.registers[0] == 0x9ABC_DEF0)
    }

    @Test func repInswMovesAPageWorthOfWordsInOneExit() throws {
        // mov edi, 0x40000; mov ecx, 256; mov dx, 0x1F0; rep insw; hlt
        let code: [UInt8] = [0xBF, 0, 0, 4, 0, 0xB9, 0, 1, 0, 0, 0x66, 0xBA, 0xF0, 0x01, 0x66, 0xF3, 0x6D, 0xF4]
        let machine = try LongModeMachine(code: code)
        #expect(machine.cpu.run(maxInstructions: 100) == .deviceAccess)
        let access = try #require(machine.cpu.pendingDeviceAccess)
        #expect(access.kind == .port && access.address == 0x1F0 && access.size == 2 && access.count == 256)
        for index in 0..<256 {
            (machine.cpu.deviceLog.buffer + access.offset + index * 2).storeBytes(of: UInt16(index), as: UInt16.self)
        }
        #expect(machine.cpu.run(maxInstructions: 100) == .halt)
        #expect(machine.cpu.registers[1] == 0)
        #expect(machine.cpu.registers[7] == 0x40200)
        #expect(try machine.memory.readValue(UInt16.self, at: 0x40000 + 2 * 200) == 200)
    }

    /// rep stos and rep movs a page at a time: unaligned words across a page boundary, a copy
    /// across pages, and a forward copy whose destination starts inside its source (which
    /// must repeat the first three bytes, as element-by-element copying does).
    @Test func repStringsFillAndCopyAcrossPagesAsElementByElement() throws {
        let code: [UInt8] = [
            0x48, 0xC7, 0xC7, 0xF1, 0x0F, 0x02, 0x00,  // mov rdi, 0x20ff1
            0xB9, 0xE8, 0x03, 0x00, 0x00,  // mov ecx, 1000
            0xB8, 0xEF, 0xBE, 0x00, 0x00,  // mov eax, 0xbeef
            0x66, 0xF3, 0xAB,  // rep stosw
            0x48, 0xC7, 0xC6, 0xF1, 0x0F, 0x02, 0x00,  // mov rsi, 0x20ff1
            0x48, 0xC7, 0xC7, 0xF3, 0x1F, 0x02, 0x00,  // mov rdi, 0x21ff3
            0xB9, 0xB8, 0x0B, 0x00, 0x00,  // mov ecx, 3000
            0xF3, 0xA4,  // rep movsb
            0x48, 0xC7, 0xC6, 0x00, 0x00, 0x03, 0x00,  // mov rsi, 0x30000
            0x48, 0xC7, 0xC7, 0x03, 0x00, 0x03, 0x00,  // mov rdi, 0x30003
            0xB9, 0x88, 0x13, 0x00, 0x00,  // mov ecx, 5000
            0xF3, 0xA4,  // rep movsb
            0xF4,
        ]
        let machine = try LongModeMachine(code: code)
        try machine.memory.write([1, 2, 3], at: 0x30000)
        #expect(machine.cpu.run(maxInstructions: 10_000) == .halt)
        let filled = try machine.memory.read(at: 0x20FF1, count: 2000)
        #expect(filled.enumerated().allSatisfy { $0.element == ($0.offset % 2 == 0 ? 0xEF : 0xBE) })
        #expect(try machine.memory.read(at: 0x20FF1 + 2000, count: 1) == [0], "nothing past the 1000 words")
        #expect(try machine.memory.read(at: 0x21FF3, count: 3000) == machine.memory.read(at: 0x20FF1, count: 3000))
        let repeated = try machine.memory.read(at: 0x30000, count: 5003)
        #expect(repeated.enumerated().allSatisfy { $0.element == UInt8($0.offset % 3 + 1) })
        #expect(machine.cpu.registers[1] == 0)
        #expect(machine.cpu.registers[6] == 0x30000 + 5000 && machine.cpu.registers[7] == 0x30003 + 5000)
    }

    @Test func divideByZeroWithoutAnIDTIsATripleFault() throws {
        let machine = try LongModeMachine(code: [0x31, 0xC9, 0xF7, 0xF1])
        guard case .shutdown(let why) = machine.cpu.run(maxInstructions: 100) else {
            Issue.record("expected a shutdown")
            return
        }
        #expect(why.contains("triple fault"))
    }

    @Test func cpuidPresentsTheDocumentedModel() throws {
        let machine = try LongModeMachine(code: [0x31, 0xC0, 0x0F, 0xA2, 0xF4])
        #expect(machine.cpu.run(maxInstructions: 100) == .halt)
        let vendor = [machine.cpu.registers[3], machine.cpu.registers[2], machine.cpu.registers[1]].flatMap { value in
            (0..<4).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
        }
        #expect(String(decoding: vendor, as: UTF8.self) == CPUIDModel.vendor)
    }
}

@Suite struct CodeMapTests {
    /// How many of the pages of `bytes` at `address` are resident (mincore).
    private func residentPages(_ address: UnsafeMutableRawPointer, _ bytes: Int) throws -> Int {
        let pageCount = (bytes + 4095) / 4096
        var vector = [UInt8](repeating: 0, count: pageCount)
        guard mincore(address, bytes, &vector) == 0 else { throw CodeMapTestError(errno: errno) }
        return vector.reduce(0) { $0 + Int($1 & 1) }
    }
    private struct CodeMapTestError: Error { let errno: Int32 }

    /// A 3 GiB machine's code map (a byte per 64 guest bytes: 48 MiB) takes no memory until a
    /// vCPU marks code in it, and then only the pages marked.
    @Test func aLargeMachinesCodeMapTakesMemoryOnlyWhereCodeIsMarked() throws {
        let ramSize: UInt64 = 3 << 30
        let map = CodeMap(ramSize: ramSize)
        let lineBytes = Int(ramSize / 64)
        let pageBytes = Int(ramSize / 4096)
        #expect(try residentPages(map.lines, lineBytes) == 0)
        #expect(try residentPages(map.pages, pageBytes) == 0)
        #expect(map.lines[lineBytes - 1] == 0, "the last line reads as unmarked")
        map.lines[1 << 20] = 1
        map.pages[pageBytes - 1] = 1
        // the page read above (the shared zero page) and the one written
        #expect(try residentPages(map.lines, lineBytes) == 2)
        #expect(try residentPages(map.pages, pageBytes) == 1)
    }
}

/// The debug registers' faults in 64-bit mode: general detect, DR8+, DR4 with CR4.DE, upper
/// bits in DR6/DR7 (CPL3's #GP is `requireKernel`'s, as for control registers).
@Suite struct DebugRegisterFaultTests {
    /// Runs `code` with a handler for `vector` at +0x100 (hlt) and returns where the CPU halted.
    func haltAddress(_ code: [UInt8], vector: Int, setUp: (X86CPU) -> Void = { _ in }) throws -> (X86CPU, UInt64) {
        let machine = try LongModeMachine(code: code + [UInt8](repeating: 0x90, count: 0x100 - code.count) + [0xF4])
        try machine.installGate(vector, handler: LongModeMachine.codeAddress + 0x100)
        setUp(machine.cpu)
        #expect(machine.cpu.run(maxInstructions: 1000) == .halt)
        return (machine.cpu, machine.cpu.rip - LongModeMachine.codeAddress)
    }

    @Test func generalDetectRaisesADebugExceptionAndLetsTheHandlerIn() throws {
        // mov eax, 0x2000 (GD); mov dr7, rax; mov rbx, dr0 (#DB); hlt
        let (cpu, halted) = try haltAddress([0xB8, 0x00, 0x20, 0, 0, 0x0F, 0x23, 0xF8, 0x0F, 0x21, 0xC3, 0xF4], vector: 1)
        #expect(halted == 0x101, "the #DB handler ran")
        #expect(cpu.debugRegisters.dr6 & 0x2000 != 0, "DR6.BD")
        #expect(cpu.debugRegisters.dr7 & 0x2000 == 0, "GD cleared for the handler")
    }

    @Test func badRegistersAndValuesFault() throws {
        // mov r8, dr0 would be REX.B: harmless; REX.R names DR8: 44 0F 21 C0 -> #UD
        #expect(try haltAddress([0x44, 0x0F, 0x21, 0xC0, 0xF4], vector: 6).1 == 0x101)
        // DR4 with CR4.DE set: #UD
        #expect(try haltAddress([0x0F, 0x21, 0xE0, 0xF4], vector: 6, setUp: { $0.cr4 |= 8 }).1 == 0x101)
        // mov rax, 1 << 32; mov dr7, rax: #GP(0)
        #expect(try haltAddress([0x48, 0xB8, 0, 0, 0, 0, 1, 0, 0, 0, 0x0F, 0x23, 0xF8, 0xF4], vector: 13).1 == 0x101)
    }
}

/// Group 9 (0F C7): cmpxchg8b needs a memory operand; cmpxchg16b (REX.W) and the other
/// members are #UD, as on a CPU without CX16, RDRAND and RDSEED (none is advertised).
@Suite struct GroupNineTests {
    @Test func onlyCmpxchg8bWithMemoryRuns() throws {
        let faults = DebugRegisterFaultTests()
        // mov esi, 0x9000; cmpxchg16b [rsi]
        #expect(try faults.haltAddress([0xBE, 0x00, 0x90, 0, 0, 0x48, 0x0F, 0xC7, 0x0E, 0xF4], vector: 6).1 == 0x101)
        // cmpxchg8b eax (register form)
        #expect(try faults.haltAddress([0x0F, 0xC7, 0xC8, 0xF4], vector: 6).1 == 0x101)
        // rdrand eax (0F C7 /6)
        #expect(try faults.haltAddress([0x0F, 0xC7, 0xF0, 0xF4], vector: 6).1 == 0x101)
        // mov esi, 0x9000; cmpxchg8b [rsi] with EDX:EAX = 0 = memory: ZF set, memory = ECX:EBX
        let (cpu, halted) = try faults.haltAddress(
            [0xBE, 0x00, 0x90, 0, 0, 0xBB, 7, 0, 0, 0, 0xB9, 9, 0, 0, 0, 0xF0, 0x0F, 0xC7, 0x0E, 0xF4], vector: 6)
        #expect(halted == 20 && cpu.condition(4), "ran to the hlt with ZF set")
    }
}
