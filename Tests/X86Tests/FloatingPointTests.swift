import Glibc
import Machine
import Testing

@testable import X86

/// x87, MMX and SSE in the interpreter: results computed by the host's own instructions, the
/// architectural checks around them (CR0/CR4, alignment, MXCSR and x87 exceptions) and the
/// state instructions (fxsave, fxrstor, ldmxcsr, fnstenv) done by the executor.
@Suite struct FloatingPointTests {
    static let data: UInt64 = 0x20000

    /// `[data + offset]` as a SIB-absolute ModRM operand with ModRM.reg `reg`.
    static func absolute(_ reg: UInt8, _ offset: UInt32 = 0) -> [UInt8] {
        let address = UInt32(data) + offset
        return [reg << 3 | 4, 0x25] + (0..<4).map { UInt8(truncatingIfNeeded: address >> ($0 * 8)) }
    }

    /// A machine with SSE enabled (CR4.OSFXSR and OSXMMEXCPT) running `code`, then hlt.
    func machine(_ code: [UInt8], sse: Bool = true) throws -> LongModeMachine {
        let machine = try LongModeMachine(code: code + [0xF4])
        if sse { machine.cpu.cr4 |= X86CPU.cr4OSFXSR | X86CPU.cr4OSXMMEXCPT }
        return machine
    }

    func doubles(_ values: [Double], in machine: LongModeMachine, at offset: UInt64 = 0) throws {
        for (index, value) in values.enumerated() {
            try machine.memory.writeValue(value.bitPattern, at: Self.data + offset + UInt64(index) * 8)
        }
    }

    func double(_ machine: LongModeMachine, at offset: UInt64) throws -> Double {
        Double(bitPattern: try machine.memory.readValue(UInt64.self, at: Self.data + offset))
    }

    /// Runs to the hlt and returns the vector of the exception taken (handlers are hlts at
    /// 0x11000 + vector), or nil when the code ran to its own hlt.
    func exception(_ machine: LongModeMachine) throws -> Int? {
        for vector in [0, 6, 7, 13, 14, 16, 19] {
            try machine.memory.write([0xF4], at: 0x11000 + UInt64(vector))
            try machine.installGate(vector, handler: 0x11000 + UInt64(vector))
        }
        #expect(machine.cpu.run(maxInstructions: 1000) == .halt)
        let stop = machine.cpu.rip &- 1
        return stop >= 0x11000 && stop < 0x11020 ? Int(stop - 0x11000) : nil
    }

    @Test func scalarDoubleArithmeticAndConversion() throws {
        // movsd xmm0,[d]; addsd xmm0,[d+8]; divsd xmm0,[d+16]; movsd [d+24],xmm0; cvttsd2si rax,xmm0
        let code =
            [0xF2, 0x0F, 0x10] + Self.absolute(0) + [0xF2, 0x0F, 0x58] + Self.absolute(0, 8) + [0xF2, 0x0F, 0x5E]
            + Self.absolute(0, 16) + [0xF2, 0x0F, 0x11] + Self.absolute(0, 24) + [0xF2, 0x48, 0x0F, 0x2C, 0xC0]
        let machine = try machine(code)
        try doubles([1.5, 2.25, 0.5], in: machine)
        #expect(try exception(machine) == nil)
        #expect(try double(machine, at: 24) == 7.5)
        #expect(machine.cpu.registers[0] == 7)
        #expect(machine.cpu.floatingPoint.mxcsr == 0x1FA0, "only the truncating conversion is inexact (PE)")
    }

    @Test func x87ComputesInExtendedPrecisionAndStoresItsStatus() throws {
        // fld qword [d]; fadd qword [d+8]; fsqrt; fstp qword [d+24]; fnstsw ax
        let code =
            [0xDD] + Self.absolute(0) + [0xDC] + Self.absolute(0, 8) + [0xD9, 0xFA, 0xDD] + Self.absolute(3, 24)
            + [0xDF, 0xE0]
        let machine = try machine(code, sse: false)
        try doubles([6.0, 3.0], in: machine)
        machine.cpu.registers[0] = 0xDEAD_0000_0000_FFFF
        #expect(try exception(machine) == nil)
        #expect(try double(machine, at: 24) == 3.0)
        #expect(machine.cpu.registers[0] == 0xDEAD_0000_0000_0000, "fnstsw ax: TOP back to 0, no flags; rest of rax kept")
        #expect(machine.cpu.floatingPoint.lastInstruction == LongModeMachine.codeAddress + 16, "FIP is the fstp")
    }

    @Test func stringSearchIdiomWithRenamedRegister() throws {
        // movdqu xmm1,[d]; pxor xmm0,xmm0; pcmpeqb xmm0,xmm1; pmovmskb edi,xmm0 (rdi is renamed on the host)
        let code =
            [0xF3, 0x0F, 0x6F] + Self.absolute(1) + [0x66, 0x0F, 0xEF, 0xC0, 0x66, 0x0F, 0x74, 0xC1, 0x66, 0x0F, 0xD7, 0xF8]
        let machine = try machine(code)
        try machine.memory.write(Array("hello".utf8) + [UInt8](repeating: 0, count: 11), at: Self.data)
        machine.cpu.registers[7] = 0x1234_5678_9ABC_DEF0
        machine.cpu.registers[11] = 0x1111
        #expect(try exception(machine) == nil)
        #expect(machine.cpu.registers[7] == 0xFFE0)
        #expect(machine.cpu.registers[11] == 0x1111, "r11 stood in for rdi on the host, not in the guest")
    }

    @Test func stackPointerOperandAndFlagsFromCompare() throws {
        // movd xmm0,esp; movd eax,xmm0; movsd xmm1,[d]; movsd xmm2,[d+8]; ucomisd xmm1,xmm2; setb cl
        let code =
            [0x66, 0x0F, 0x6E, 0xC4, 0x66, 0x0F, 0x7E, 0xC0, 0xF2, 0x0F, 0x10] + Self.absolute(1) + [0xF2, 0x0F, 0x10]
            + Self.absolute(2, 8) + [0x66, 0x0F, 0x2E, 0xCA, 0x0F, 0x92, 0xC1]
        let machine = try machine(code)
        try doubles([1.0, 2.0], in: machine)
        #expect(try exception(machine) == nil)
        #expect(machine.cpu.registers[0] == 0x80000)
        #expect(machine.cpu.registers[4] == 0x80000)
        #expect(machine.cpu.registers[1] & 0xFF == 1, "1.0 < 2.0 sets CF")
    }

    @Test func availabilityFaults() throws {
        let addpd = [UInt8(0x66), 0x0F, 0x58, 0xC1]
        #expect(try exception(try machine(addpd, sse: false)) == 6, "SSE without CR4.OSFXSR is #UD")
        let switched = try machine(addpd)
        switched.cpu.cr0 |= X86CPU.cr0TaskSwitched
        #expect(try exception(switched) == 7, "CR0.TS: #NM")
        let emulated = try machine([0xD9, 0xE8])  // fld1
        emulated.cpu.cr0 |= X86CPU.cr0Emulation
        #expect(try exception(emulated) == 7, "x87 with CR0.EM: #NM")
        // movaps xmm0,[d+8] is misaligned; movups is not checked
        #expect(try exception(try machine([0x0F, 0x28] + Self.absolute(0, 8))) == 13)
        #expect(try exception(try machine([0x0F, 0x10] + Self.absolute(0, 8))) == nil)
        // lock addps, and 0F 38 (no SSSE3 offered)
        #expect(try exception(try machine([0xF0, 0x0F, 0x58, 0x00])) == 6)
        #expect(try exception(try machine([0x66, 0x0F, 0x38, 0x00, 0xC1])) == 6)
    }

    @Test func unmaskedSimdExceptionWritesNothing() throws {
        // ldmxcsr [d] (divide-by-zero unmasked); movsd xmm0,[d+8]; divsd xmm0,[d+16]; movsd [d+24],xmm0
        let code =
            [0x0F, 0xAE] + Self.absolute(2) + [0xF2, 0x0F, 0x10] + Self.absolute(0, 8) + [0xF2, 0x0F, 0x5E]
            + Self.absolute(0, 16) + [0xF2, 0x0F, 0x11] + Self.absolute(0, 24)
        let machine = try machine(code)
        try machine.memory.writeValue(UInt32(0x1F80 & ~0x200), at: Self.data)
        try doubles([1.0, 0.0, 42.0], in: machine, at: 8)
        #expect(try exception(machine) == 19)
        #expect(machine.cpu.floatingPoint.mxcsr & 0x4 != 0, "ZE is set")
        #expect(try double(machine, at: 24) == 42.0, "the store after the fault never ran")
        let withoutOSXMMEXCPT = try self.machine(code)
        withoutOSXMMEXCPT.cpu.cr4 &= ~X86CPU.cr4OSXMMEXCPT
        try withoutOSXMMEXCPT.memory.writeValue(UInt32(0x1F80 & ~0x200), at: Self.data)
        try doubles([1.0, 0.0], in: withoutOSXMMEXCPT, at: 8)
        #expect(try exception(withoutOSXMMEXCPT) == 6)
    }

    @Test func unmaskedX87ExceptionIsPendingUntilTheNextWaitingInstruction() throws {
        // fldcw [d] (zero-divide unmasked); fld1; fldz; fdivp; fnstsw ax (no wait); fwait (#MF)
        let code = [0xD9] + Self.absolute(5) + [0xD9, 0xE8, 0xD9, 0xEE, 0xDE, 0xF9, 0xDF, 0xE0, 0x9B]
        let machine = try machine(code, sse: false)
        try machine.memory.writeValue(UInt16(0x37F & ~0x4), at: Self.data)
        #expect(try exception(machine) == 16)
        let status = machine.cpu.registers[0] & 0xFFFF
        #expect(status & 0x4 != 0 && status & 0x80 != 0 && status & 0x8000 != 0, "ZE, ES and B set: \(status)")
        #expect(machine.cpu.floatingPoint.control == 0x37B, "the guest's control word, not the masked one")
    }

    @Test func environmentAndControlWordStoresShowTheGuestsControlWord() throws {
        // fldcw [d]; fnstcw [d+2]; fnstenv [d+8]; fnstcw [d+4]
        let code =
            [0xD9] + Self.absolute(5) + [0xD9] + Self.absolute(7, 2) + [0xD9] + Self.absolute(6, 8) + [0xD9] + Self.absolute(7, 4)
        let machine = try machine(code, sse: false)
        try machine.memory.writeValue(UInt16(0x360), at: Self.data)
        #expect(try exception(machine) == nil)
        #expect(try machine.memory.readValue(UInt16.self, at: Self.data + 2) == 0x360)
        #expect(try machine.memory.readValue(UInt16.self, at: Self.data + 8) == 0x360, "fnstenv stores the control word")
        #expect(try machine.memory.readValue(UInt16.self, at: Self.data + 4) == 0x37F, "then masks every exception")
    }

    @Test func fxsaveAndFxrstorRoundTripAndRefuseReservedMXCSRBits() throws {
        // movsd xmm5,[d]; fxsave [d+0x200]; pxor xmm5,xmm5; fxrstor [d+0x200]; movsd [d+8],xmm5
        let code =
            [0xF2, 0x0F, 0x10] + Self.absolute(5) + [0x0F, 0xAE] + Self.absolute(0, 0x200) + [0x66, 0x0F, 0xEF, 0xED, 0x0F, 0xAE]
            + Self.absolute(1, 0x200) + [0xF2, 0x0F, 0x11] + Self.absolute(5, 8)
        let machine = try machine(code)
        try doubles([3.25], in: machine)
        #expect(try exception(machine) == nil)
        #expect(try double(machine, at: 8) == 3.25)
        #expect(try machine.memory.readValue(UInt16.self, at: Self.data + 0x200) == 0x37F, "FCW")
        #expect(try machine.memory.readValue(UInt32.self, at: Self.data + 0x218) == 0x1F80, "MXCSR")
        #expect(try machine.memory.readValue(UInt32.self, at: Self.data + 0x21C) == 0xFFFF, "MXCSR_MASK")

        // fxrstor of an image with MXCSR bit 16 set: #GP, state unchanged; ldmxcsr likewise.
        let bad = try self.machine([0x0F, 0xAE] + Self.absolute(1, 0x200))
        try bad.memory.writeValue(UInt32(0x1_1F80), at: Self.data + 0x218)
        #expect(try exception(bad) == 13)
        #expect(bad.cpu.floatingPoint.mxcsr == 0x1F80)
        let badLoad = try self.machine([0x0F, 0xAE] + Self.absolute(2))
        try badLoad.memory.writeValue(UInt32(0x1_0000), at: Self.data)
        #expect(try exception(badLoad) == 13)
        #expect(try exception(try self.machine([0x0F, 0xAE] + Self.absolute(0, 8))) == 13, "fxsave needs 16-byte alignment")
    }

    /// verr/verw against the test machine's GDT (0x08: 64-bit code, readable, not writable;
    /// 0x10: nothing there). Linux runs `verw` on every return to user mode.
    @Test func verifySegmentForReadingAndWriting() throws {
        // mov ax,8; verr ax; setz bl; verw ax; setz cl; mov ax,0x10; verr ax; setz dl
        let code: [UInt8] = [
            0x66, 0xB8, 0x08, 0x00, 0x0F, 0x00, 0xE0, 0x0F, 0x94, 0xC3, 0x0F, 0x00, 0xE8, 0x0F, 0x94, 0xC1, 0x66, 0xB8,
            0x10, 0x00, 0x0F, 0x00, 0xE0, 0x0F, 0x94, 0xC2,
        ]
        let machine = try machine(code, sse: false)
        #expect(try exception(machine) == nil)
        #expect(machine.cpu.registers[3] & 0xFF == 1, "code segment 0x08 is readable")
        #expect(machine.cpu.registers[1] & 0xFF == 0, "but not writable")
        #expect(machine.cpu.registers[2] & 0xFF == 0, "an empty descriptor is neither")
    }

    @Test func maskedMoveStoresSelectedBytesAtRDI() throws {
        // movdqu xmm1,[d]; movdqu xmm2,[d+16]; maskmovdqu xmm1,xmm2 (to [rdi])
        let code = [0xF3, 0x0F, 0x6F] + Self.absolute(1) + [0xF3, 0x0F, 0x6F] + Self.absolute(2, 16) + [0x66, 0x0F, 0xF7, 0xCA]
        let machine = try machine(code)
        try machine.memory.write(Array(1...16), at: Self.data)
        try machine.memory.write([0x80, 0, 0x80] + [UInt8](repeating: 0, count: 13), at: Self.data + 16)
        try machine.memory.write([UInt8](repeating: 0xEE, count: 16), at: Self.data + 64)
        machine.cpu.registers[7] = Self.data + 64
        #expect(try exception(machine) == nil)
        #expect(try machine.memory.read(at: Self.data + 64, count: 4) == [1, 0xEE, 3, 0xEE])
    }
}
