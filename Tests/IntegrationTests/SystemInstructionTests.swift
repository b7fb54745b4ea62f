import Foundation
import KVM
import Machine
import TestSupport
import Testing
import VMM

/// The integer system instructions a bare-metal kernel may run at CPL0 beyond the boot path
/// (smsw in every operand size, lmsw, sldt, lldt with a null selector, str, clts, wbinvd, invd),
/// run by one 32-bit kernel in the emulator and under KVM: both must leave the same results.
@Suite struct SystemInstructionTests {
    /// Results go to 0x8000..0x8023, which starts filled with 0xAA so that 16-bit stores show
    /// which bytes they left alone.
    static let code: [UInt8] = [
        0x0F, 0x01, 0xE0,  // smsw eax
        0xA3, 0x00, 0x80, 0x00, 0x00,  // mov [0x8000], eax
        0xB8, 0xFF, 0xFF, 0xFF, 0xFF,  // mov eax, -1
        0x66, 0x0F, 0x01, 0xE0,  // smsw ax: the encoding a real benchmark kernel used
        0xA3, 0x04, 0x80, 0x00, 0x00,  // mov [0x8004], eax
        0x0F, 0x01, 0x25, 0x08, 0x80, 0x00, 0x00,  // smsw [0x8008]: 16 bits
        0x0F, 0x00, 0x05, 0x0C, 0x80, 0x00, 0x00,  // sldt [0x800C]: 16 bits
        0xB8, 0xFF, 0xFF, 0xFF, 0xFF,  // mov eax, -1
        0x0F, 0x00, 0xC0,  // sldt eax: zero-extended
        0xA3, 0x10, 0x80, 0x00, 0x00,  // mov [0x8010], eax
        0x66, 0xB8, 0x09, 0x00,  // mov ax, PE | TS
        0x0F, 0x01, 0xF0,  // lmsw ax
        0x0F, 0x01, 0xE0, 0xA3, 0x14, 0x80, 0x00, 0x00,  // smsw eax; mov [0x8014], eax
        0x0F, 0x06,  // clts
        0x0F, 0x01, 0xE0, 0xA3, 0x18, 0x80, 0x00, 0x00,  // smsw eax; mov [0x8018], eax
        0x66, 0x31, 0xC0,  // xor ax, ax
        0x0F, 0x01, 0xF0,  // lmsw ax: cannot clear PE
        0x0F, 0x01, 0xE0, 0xA3, 0x1C, 0x80, 0x00, 0x00,  // smsw eax; mov [0x801C], eax
        0x0F, 0x09,  // wbinvd
        0x0F, 0x08,  // invd
        0x31, 0xC0,  // xor eax, eax
        0x0F, 0x00, 0xD0,  // lldt ax (null)
        0x0F, 0x00, 0xC8,  // str eax
        0xA3, 0x20, 0x80, 0x00, 0x00,  // mov [0x8020], eax
        0xB0, 0x00, 0xE6, 0xF4,  // mov al, 0; out 0xF4, al
    ]

    func run(_ cpu: VMBuilder.CPU) throws -> (ending: VMEnding, results: [UInt8]) {
        try Self.runCPL0(Self.code, cpu, results: 0x24, filledWith: 0xAA)
    }

    /// Boots 32-bit `code` (a Multiboot kernel, CPL0) and returns how the VM ended and the
    /// `results` bytes it left at 0x8000 (which start as `filledWith`).
    static func runCPL0(_ code: [UInt8], _ cpu: VMBuilder.CPU, results count: Int, filledWith fill: UInt8 = 0) throws -> (
        ending: VMEnding, results: [UInt8]
    ) {
        var results: [UInt8] = []
        let boot = try VMBuilder.boot(
            VMDescription(kernel: TestKernels.multiboot(code: code), memoryMiB: 16, cpu: cpu), timeout: 300,
            prepare: { try $0.write([UInt8](repeating: fill, count: count), at: 0x8000) },
            inspect: { results = (try? $0.read(at: 0x8000, count: count)) ?? [] })
        return (boot.outcome.ending, results)
    }

    static func word(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
    }

    @Test func theEmulatorRunsThemAsTheArchitectureSays() throws {
        let (ending, results) = try run(.emulator())
        #expect(ending == .exitDevice(status: 1), "\(ending.summary)")
        let cr0 = Self.word(results, 0)
        #expect(cr0 & 1 == 1, "protected mode")
        #expect(Self.word(results, 4) == 0xFFFF_0000 | cr0 & 0xFFFF, "smsw ax leaves the high half")
        #expect(Self.word(results, 8) == 0xAAAA_0000 | cr0 & 0xFFFF, "a memory operand takes 16 bits")
        #expect(Self.word(results, 12) == 0xAAAA_0000, "no LDT")
        #expect(Self.word(results, 16) == 0)
        #expect(Self.word(results, 20) == cr0 | 8, "lmsw set TS")
        #expect(Self.word(results, 24) == cr0, "clts cleared it")
        #expect(Self.word(results, 28) == cr0, "lmsw cannot clear PE")
        #expect(Self.word(results, 32) == UInt32(ProtectedModeEntry.taskSelector))
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func kvmAgrees() throws {
        let emulated = try run(.emulator())
        let hardware = try run(.kvm(try KVMSystem()))
        #expect(hardware.ending == .exitDevice(status: 1), "\(hardware.ending.summary)")
        #expect(hardware.results == emulated.results, "KVM \(hardware.results) vs emulator \(emulated.results)")
    }
}

/// mov to and from the debug registers at CPL0, run by one 32-bit kernel in the emulator and
/// under KVM: reset values, fixed bits, DR4/DR5 as DR6/DR7 aliases (CR4.DE clear).
@Suite struct DebugRegisterTests {
    static let code: [UInt8] = [
        0x0F, 0x21, 0xF0, 0xA3, 0x00, 0x80, 0x00, 0x00,  // mov eax, dr6; mov [0x8000], eax
        0x0F, 0x21, 0xF8, 0xA3, 0x04, 0x80, 0x00, 0x00,  // mov eax, dr7; mov [0x8004], eax
        0xB8, 0x78, 0x56, 0x34, 0x12, 0x0F, 0x23, 0xC0,  // mov eax, 0x12345678; mov dr0, eax
        0x0F, 0x21, 0xC3, 0x89, 0x1D, 0x08, 0x80, 0x00, 0x00,  // mov ebx, dr0; mov [0x8008], ebx
        0xB8, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x23, 0xF0,  // mov eax, -1; mov dr6, eax
        0x0F, 0x21, 0xE1, 0x89, 0x0D, 0x0C, 0x80, 0x00, 0x00,  // mov ecx, dr4 (= dr6); mov [0x800C], ecx
        0xB8, 0xFF, 0xDF, 0xFF, 0xFF, 0x0F, 0x23, 0xF8,  // mov eax, ~GD; mov dr7, eax
        0x0F, 0x21, 0xEA, 0x89, 0x15, 0x10, 0x80, 0x00, 0x00,  // mov edx, dr5 (= dr7); mov [0x8010], edx
        0x31, 0xC0, 0x0F, 0x23, 0xF8, 0x0F, 0x23, 0xF0,  // xor eax, eax; mov dr7, eax; mov dr6, eax
        0x0F, 0x21, 0xF0, 0xA3, 0x14, 0x80, 0x00, 0x00,  // mov eax, dr6; mov [0x8014], eax
        0x0F, 0x21, 0xF8, 0xA3, 0x18, 0x80, 0x00, 0x00,  // mov eax, dr7; mov [0x8018], eax
        0xB0, 0x00, 0xE6, 0xF4,  // exit 0
    ]

    func run(_ cpu: VMBuilder.CPU) throws -> (ending: VMEnding, words: [UInt32]) {
        let (ending, results) = try SystemInstructionTests.runCPL0(Self.code, cpu, results: 0x1C)
        return (ending, (0..<7).map { SystemInstructionTests.word(results, $0 * 4) })
    }

    @Test func theEmulatorKeepsThemAsTheArchitectureSays() throws {
        let (ending, words) = try run(.emulator())
        #expect(ending == .exitDevice(status: 1), "\(ending.summary)")
        #expect(words == [0xFFFF_0FF0, 0x400, 0x1234_5678, 0xFFFF_EFFF, 0xFFFF_0FFF, 0xFFFF_0FF0, 0x400])
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func kvmAgrees() throws {
        let emulated = try run(.emulator())
        let hardware = try run(.kvm(try KVMSystem()))
        #expect(hardware.ending == .exitDevice(status: 1), "\(hardware.ending.summary)")
        // DR6 bit 16 (RTM) is writable only where the CPU has RTM: KVM gives the guest the
        // host's CPUID, the emulator a CPU without it.
        let masked = hardware.words.enumerated().map { $0.offset == 5 ? $0.element | 0x1_0000 : $0.element }
        #expect(masked == emulated.words, "KVM \(hardware.words) vs emulator \(emulated.words)")
    }
}

/// cmpxchg8b (CPUID's CX8), locked and plain, matching and not, in the emulator and under KVM.
@Suite struct CompareExchange8BTests {
    static let code: [UInt8] = [
        0xBC, 0x00, 0x90, 0x00, 0x00,  // mov esp, 0x9000: a stack for pushfd
        0x68, 0x92, 0x08, 0x00, 0x00, 0x9D,  // push 0x892 (OF, SF, AF set; ZF, CF, PF clear); popfd
        0xC7, 0x05, 0x00, 0x80, 0x00, 0x00, 0x11, 0x11, 0x11, 0x11,  // mov dword [0x8000], 0x11111111
        0xC7, 0x05, 0x04, 0x80, 0x00, 0x00, 0x22, 0x22, 0x22, 0x22,  // mov dword [0x8004], 0x22222222
        0xB8, 0x11, 0x11, 0x11, 0x11, 0xBA, 0x22, 0x22, 0x22, 0x22,  // mov eax, ...; mov edx, ...
        0xBB, 0x33, 0x33, 0x33, 0x33, 0xB9, 0x44, 0x44, 0x44, 0x44,  // mov ebx, ...; mov ecx, ...
        0xF0, 0x0F, 0xC7, 0x0D, 0x00, 0x80, 0x00, 0x00,  // lock cmpxchg8b [0x8000]: matches
        0x9C, 0x58, 0xA3, 0x08, 0x80, 0x00, 0x00,  // pushfd; pop eax; mov [0x8008], eax
        0xB8, 0x11, 0x11, 0x11, 0x11,  // mov eax, 0x11111111 (edx still 0x22222222)
        0x0F, 0xC7, 0x0D, 0x00, 0x80, 0x00, 0x00,  // cmpxchg8b [0x8000]: does not match
        0x9C, 0x5E, 0x89, 0x35, 0x0C, 0x80, 0x00, 0x00,  // pushfd; pop esi; mov [0x800C], esi
        0xA3, 0x10, 0x80, 0x00, 0x00, 0x89, 0x15, 0x14, 0x80, 0x00, 0x00,  // mov [0x8010], eax; mov [0x8014], edx
        0xB0, 0x00, 0xE6, 0xF4,  // exit 0
    ]

    func run(_ cpu: VMBuilder.CPU) throws -> (ending: VMEnding, words: [UInt32]) {
        let (ending, results) = try SystemInstructionTests.runCPL0(Self.code, cpu, results: 0x18)
        // The arithmetic flags only: the rest of EFLAGS is the engines' own.
        let words = (0..<6).map { SystemInstructionTests.word(results, $0 * 4) }.enumerated().map {
            $0.offset == 2 || $0.offset == 3 ? $0.element & 0x8D5 : $0.element
        }
        return (ending, words)
    }

    @Test func theEmulatorRunsItAsTheArchitectureSays() throws {
        let (ending, words) = try run(.emulator())
        #expect(ending == .exitDevice(status: 1), "\(ending.summary)")
        // ZF set by the match and cleared by the mismatch; OF, SF and AF kept.
        #expect(words == [0x3333_3333, 0x4444_4444, 0x8D0, 0x890, 0x3333_3333, 0x4444_4444])
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func kvmAgrees() throws {
        let emulated = try run(.emulator())
        let hardware = try run(.kvm(try KVMSystem()))
        #expect(hardware.ending == .exitDevice(status: 1), "\(hardware.ending.summary)")
        #expect(hardware.words == emulated.words, "KVM \(hardware.words) vs emulator \(emulated.words)")
    }
}
