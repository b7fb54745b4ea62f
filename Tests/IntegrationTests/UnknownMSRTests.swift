import Foundation
import KVM
import Machine
import TestSupport
import Testing
import VMM

/// rdmsr and wrmsr of MSRs no CPU has raise #GP(0) at CPL0 with RIP at the instruction, in the
/// emulator and under KVM: one kernel enters long mode (its page tables, GDT and IDT written
/// before boot), takes both faults in a #GP handler that records error code and RIP, and exits.
@Suite struct UnknownMSRTests {
    static let base: UInt64 = 0x10_0020  // where a multiboot test kernel's code starts
    static let results: UInt64 = 0x3_0000

    static let code: [UInt8] =
        [
            0xBC, 0x00, 0x80, 0x04, 0x00,  // 0: mov esp, 0x48000
            0x0F, 0x20, 0xE0, 0x83, 0xC8, 0x20, 0x0F, 0x22, 0xE0,  // 5: cr4 |= PAE
            0xB8, 0x00, 0x00, 0x04, 0x00, 0x0F, 0x22, 0xD8,  // 14: cr3 = 0x40000
            0xB9, 0x80, 0x00, 0x00, 0xC0, 0x0F, 0x32, 0x0D, 0x00, 0x01, 0x00, 0x00, 0x0F, 0x30,  // 22: EFER.LME
            0x0F, 0x20, 0xC0, 0x0D, 0x01, 0x00, 0x00, 0x80, 0x0F, 0x22, 0xC0,  // 36: cr0 |= PG | PE
            0x0F, 0x01, 0x15, 0x00, 0x40, 0x04, 0x00,  // 47: lgdt [0x44000]
            0xEA, 0x5D, 0x00, 0x10, 0x00, 0x08, 0x00,  // 54: jmp 0x08:base+61 (64-bit code)
            0x0F, 0x01, 0x1C, 0x25, 0x10, 0x40, 0x04, 0x00,  // 61: lidt [0x44010]
            0xB9, 0x78, 0x56, 0x34, 0x12,  // 69: mov ecx, 0x12345678
            0x0F, 0x32,  // 74: rdmsr: #GP
            0xF4,  // 76: hlt (only if rdmsr did not fault)
            // 77: the #GP handler: record error code and RIP, then fault once more with wrmsr
            0x58,  // pop rax (error code)
            0x8B, 0x0C, 0x25, 0xF0, 0x00, 0x03, 0x00,  // 78: mov ecx, [0x300F0] (faults so far)
            0x48, 0x89, 0x04, 0xCD, 0x00, 0x00, 0x03, 0x00,  // 85: mov [rcx*8 + 0x30000], rax
            0x58,  // 93: pop rax (RIP)
            0x48, 0x89, 0x04, 0xCD, 0x40, 0x00, 0x03, 0x00,  // 94: mov [rcx*8 + 0x30040], rax
            0xFF, 0x04, 0x25, 0xF0, 0x00, 0x03, 0x00,  // 102: inc dword [0x300F0]
            0x83, 0xF9, 0x00, 0x75, 0x0C,  // 109: cmp ecx, 0; jne 126
            0xB9, 0x34, 0x12, 0x00, 0x00, 0x31, 0xC0, 0x31, 0xD2,  // 114: ecx = 0x1234; eax = edx = 0
            0x0F, 0x30,  // 123: wrmsr: #GP
            0xF4,  // 125: hlt
            0xB0, 0x00, 0xE6, 0xF4, 0xF4,  // 126: out 0xF4, 0 (status 1); hlt
        ]

    /// Identity-mapped first 16 MiB (2 MiB pages), a GDT with 64-bit code and data, and an IDT
    /// whose #GP gate points at the handler.
    static func prepare(_ memory: GuestMemory) throws {
        try memory.writeValue(UInt64(0x41003), at: 0x40000)
        try memory.writeValue(UInt64(0x42003), at: 0x41000)
        for page in 0..<8 { try memory.writeValue(UInt64(page) << 21 | 0x83, at: 0x42000 + UInt64(page) * 8) }
        let handler = base + 77
        let gate = (handler & 0xFFFF) | 0x08 << 16 | 0x8E << 40 | ((handler >> 16) & 0xFFFF) << 48
        try memory.writeValue(gate, at: 0x43000 + 13 * 16)
        try memory.writeValue(handler >> 32, at: 0x43000 + 13 * 16 + 8)
        for (index, descriptor) in [UInt64(0), 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF, 0x00CF_9200_0000_FFFF].enumerated() {
            try memory.writeValue(descriptor, at: 0x44100 + UInt64(index) * 8)
        }
        try memory.writeValue(UInt16(0x1F), at: 0x44000)
        try memory.writeValue(UInt32(0x44100), at: 0x44002)
        try memory.writeValue(UInt16(0xFFF), at: 0x44010)
        try memory.writeValue(UInt64(0x43000), at: 0x44012)
    }

    func run(_ cpu: VMBuilder.CPU) throws -> (ending: VMEnding, faults: UInt32, errors: [UInt64], rips: [UInt64]) {
        var faults: UInt32 = 0
        var errors: [UInt64] = []
        var rips: [UInt64] = []
        let boot = try VMBuilder.boot(
            VMDescription(kernel: TestKernels.multiboot(code: Self.code), commandLine: "", memoryMiB: 16, cpu: cpu), timeout: 300,
            prepare: Self.prepare,
            inspect: { memory in
                faults = (try? memory.readValue(UInt32.self, at: Self.results + 0xF0)) ?? 0
                errors = (0..<2).map { (try? memory.readValue(UInt64.self, at: Self.results + $0 * 8)) ?? ~0 }
                rips = (0..<2).map { (try? memory.readValue(UInt64.self, at: Self.results + 0x40 + $0 * 8)) ?? ~0 }
            })
        return (boot.outcome.ending, faults, errors, rips)
    }

    @Test func theEmulatorRaisesGeneralProtection() throws {
        let emulated = try run(.emulator())
        #expect(emulated.ending == .exitDevice(status: 1), "\(emulated.ending.summary)")
        #expect(emulated.faults == 2 && emulated.errors == [0, 0])
        #expect(emulated.rips == [Self.base + 74, Self.base + 123], "RIP at the faulting rdmsr and wrmsr")
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func kvmAgrees() throws {
        let hardware = try run(.kvm(try KVMSystem()))
        #expect(hardware.ending == .exitDevice(status: 1), "\(hardware.ending.summary)")
        #expect(hardware.faults == 2 && hardware.errors == [0, 0])
        #expect(hardware.rips == [Self.base + 74, Self.base + 123])
    }
}
