import CGuestAtomics
import Foundation
import Machine
import Testing

@testable import X86

/// The emulator with several vCPU threads over one RAM: locked instructions stay atomic, a store
/// to code another vCPU decoded reaches it, an application processor starts in real mode at its
/// SIPI vector and runs a trampoline into protected mode, and unknown MSRs raise #GP.
@Suite struct MultiprocessorTests {
    /// A second vCPU on `machine`'s RAM, in the same long mode, with its own stack.
    func secondCPU(of machine: LongModeMachine, code: UInt64) -> X86CPU {
        let cpu = X86CPU(
            ram: machine.memory.base, ramSize: machine.memory.size, timestamp: { 0 }, codeMap: machine.cpu.codeMap, index: 1)
        cpu.enterLongMode(rip: code, cr3: 0x1000, cpl: 0, codeSelector: 0x08, stackSelector: 0x10, gdtBase: 0x500, gdtLimit: 0xF)
        cpu.registers[4] = 0x90000
        return cpu
    }

    /// Runs `cpu` to its next stop on a thread of its own.
    func start(_ cpu: X86CPU, budget: Int = 50_000_000) -> StopBox {
        let stop = StopBox()
        let box = UncheckedBox(cpu)
        Thread { stop.set(box.value.run(maxInstructions: budget)) }.start()
        return stop
    }

    func wait(for stop: StopBox, seconds: Double = 120) -> X86Stop? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let value = stop.value { return value }
            usleep(1000)
        }
        return nil
    }

    /// Both vCPUs translating (at once) or both interpreting.
    func useTranslator(_ translate: Bool, _ cpus: X86CPU...) {
        guard translate else { return }
        for cpu in cpus { cpu.translation = TranslationCache(hotAfter: 1) }
    }

    @Test(arguments: [false, true])
    func lockedAddsFromTwoVCPUsLoseNothing(translate: Bool) throws {
        // mov ecx, 200000 / again: lock inc qword [0x9000] / xchg [0x9008], rax (a locked swap) /
        // dec ecx / jnz again / out 0xF4, al
        let loop: [UInt8] = [
            0xB9, 0x40, 0x0D, 0x03, 0x00, 0xF0, 0x48, 0xFF, 0x04, 0x25, 0x00, 0x90, 0x00, 0x00, 0x48, 0x87, 0x04, 0x25, 0x08,
            0x90, 0x00, 0x00, 0xFF, 0xC9, 0x75, 0xEB, 0xE6, 0xF4,
        ]
        let machine = try LongModeMachine(code: loop)
        let other = secondCPU(of: machine, code: LongModeMachine.codeAddress)
        let processors = EmulatedProcessors([machine.cpu, other])
        useTranslator(translate, machine.cpu, other)
        #expect(processors.count == 2)
        let first = start(machine.cpu)
        let second = start(other)
        #expect(wait(for: first) == .deviceAccess)
        #expect(wait(for: second) == .deviceAccess)
        #expect(try machine.memory.readValue(UInt64.self, at: 0x9000) == 400_000, "no locked increment lost")
        if translate {
            // The locked increment and swap run as host instructions (lock inc, xchg) on guest RAM.
            for cpu in [machine.cpu, other] {
                #expect((cpu.translation?.instructionsInBlocks ?? 0) > 100_000, "the loop ran translated")
            }
        }
    }

    /// Translated, the spinning vCPU's loop is one block looping in host code: the store's
    /// notice reaches it through its mail word at the next pass.
    @Test(arguments: [false, true])
    func aStoreToCodeAnotherVCPUDecodedReachesIt(translate: Bool) throws {
        // vCPU 1 at 0x10000: again: mov al, 1 / cmp al, 2 / jne again / out 0xF4, al
        // vCPU 0 at 0x20000: mov byte [0x10001], 2 / out 0xF4, al
        let spinner: [UInt8] = [0xB0, 0x01, 0x3C, 0x02, 0x75, 0xFA, 0xE6, 0xF4]
        let machine = try LongModeMachine(code: spinner)
        try machine.memory.write([0xC6, 0x04, 0x25, 0x01, 0x00, 0x01, 0x00, 0x02, 0xE6, 0xF4], at: 0x20000)
        let other = secondCPU(of: machine, code: LongModeMachine.codeAddress)
        _ = EmulatedProcessors([machine.cpu, other])
        useTranslator(translate, machine.cpu, other)
        machine.cpu.rip = 0x20000
        let spinning = start(other, budget: Int.max)
        // It has decoded and run the loop (bounded, so a vCPU that never runs fails, not hangs).
        let running = Date().addingTimeInterval(60)
        while other.retired < 1000 && Date() < running { usleep(100) }
        #expect(machine.cpu.run(maxInstructions: 100) == .deviceAccess)
        let stop = wait(for: spinning, seconds: 60)
        if stop == nil { other.requestStop() }
        #expect(stop == .deviceAccess, "the spinning vCPU saw the new immediate")
        #expect(other.registers[0] & 0xFF == 2)
        if translate { #expect((other.translation?.instructionsInBlocks ?? 0) > 0, "the loop ran translated") }
    }

    /// What an AP trampoline does, from the SIPI on: 16-bit code with [bx+si+disp8] addressing,
    /// a segment loaded as selector × 16, a near call and ret that push and pop IP, lgdt with a
    /// 32-bit operand, CR0.PE, and a far jump with a 32-bit offset into 32-bit protected mode.
    @Test func aStartedVCPURunsARealModeTrampolineIntoProtectedMode() throws {
        let trampoline: [UInt8] = [
            0xB8, 0x00, 0x09,  // 0: mov ax, 0x900
            0x8E, 0xD8,  // 3: mov ds, ax (base 0x9000)
            0xBB, 0x10, 0x00,  // 5: mov bx, 0x10
            0xBE, 0x04, 0x00,  // 8: mov si, 4
            0xC7, 0x40, 0x02, 0x34, 0x12,  // 11: mov word [bx+si+2], 0x1234 -> 0x9016
            0xBC, 0x00, 0x70,  // 16: mov sp, 0x7000
            0xE8, 0x19, 0x00,  // 19: call 47
            0xA3, 0x20, 0x00,  // 22: mov [0x20], ax -> 0x9020
            0x66, 0x0F, 0x01, 0x16, 0x00, 0x02,  // 25: lgdtl [0x200] -> 0x9200
            0x0F, 0x20, 0xC0,  // 31: mov eax, cr0
            0x0C, 0x01,  // 34: or al, 1
            0x0F, 0x22, 0xC0,  // 36: mov cr0, eax
            0x66, 0xEA, 0x33, 0x80, 0x00, 0x00, 0x08, 0x00,  // 39: ljmpl 0x08:0x8033
            0xB8, 0x78, 0x56,  // 47: mov ax, 0x5678
            0xC3,  // 50: ret
            0xC6, 0x05, 0x30, 0x00, 0x00, 0x00, 0x77,  // 51: mov byte [0x30], 0x77: DS keeps its real-mode base
            0xE6, 0xF4,  // 58: out 0xF4, al
        ]
        let memory = try GuestMemory(size: 16 << 20)
        try memory.write(trampoline, at: 0x8000)
        try memory.writeValue(UInt64(0x00CF_9A00_0000_FFFF), at: 0x9108)  // GDT at 0x9100: 0x08 = flat 32-bit code
        try memory.writeValue(UInt16(0x0F), at: 0x9200)
        try memory.writeValue(UInt32(0x9100), at: 0x9202)
        let cpu = X86CPU(ram: memory.base, ramSize: memory.size, timestamp: { 0 }, index: 1)
        cpu.waitForStartup()
        #expect(cpu.waitingForStartup)
        cpu.startUp(vector: 0x08)
        #expect(cpu.is16BitCode && cpu.rip == 0x8000 && cpu.selectors[1] == 0x800)
        #expect(cpu.run(maxInstructions: 100) == .deviceAccess)
        #expect(try memory.readValue(UInt16.self, at: 0x9016) == 0x1234)
        #expect(try memory.readValue(UInt16.self, at: 0x9020) == 0x5678, "ret came back after the call")
        #expect(try memory.readValue(UInt16.self, at: 0x6FFE) == 22, "call pushed IP, not the linear address")
        #expect(try memory.readValue(UInt8.self, at: 0x9030) == 0x77)
        #expect(!cpu.is16BitCode && cpu.cr0 & 1 == 1 && cpu.selectors[1] == 0x08)
        #expect(cpu.rip == 0x8000 + 58, "stopped at the out, in 32-bit code")
    }

    /// An application processor runs nothing before its SIPI, however early its thread starts
    /// (it once ran from address 0 when its thread beat the guest's INIT), and a stop request
    /// ends its wait.
    @Test func anApplicationProcessorWaitsForItsSIPI() throws {
        let machine = try LongModeMachine(code: [0xEB, 0xFE])
        let other = X86CPU(
            ram: machine.memory.base, ramSize: machine.memory.size, timestamp: { 0 }, codeMap: machine.cpu.codeMap, index: 1)
        other.waitForStartup()
        _ = EmulatedProcessors([machine.cpu, other])
        let waiting = start(other)
        // Wait (however long this host takes) until its thread sleeps in the wait for SIPI: it
        // must have run nothing on the way there.
        let asleep = Date().addingTimeInterval(120)
        while cga_load_32(other.mail) & Mail.sleeping == 0 && Date() < asleep { usleep(1000) }
        #expect(cga_load_32(other.mail) & Mail.sleeping != 0, "the thread reached its wait for SIPI")
        #expect(waiting.value == nil && other.retired == 0)
        other.requestStop()
        #expect(wait(for: waiting, seconds: 30) == .interrupted)
        #expect(other.retired == 0 && other.waitingForStartup)
    }

    /// rdmsr and wrmsr of an MSR the CPU does not have raise #GP(0), as on hardware and KVM.
    @Test func unknownMSRsRaiseGeneralProtection() throws {
        // mov ecx, 0x12345678 / rdmsr / hlt / (handler at +8) hlt
        for access: UInt8 in [0x32, 0x30] {
            let code: [UInt8] = [0xB9, 0x78, 0x56, 0x34, 0x12, 0x0F, access, 0xF4, 0xF4]
            let machine = try LongModeMachine(code: code)
            try machine.installGate(13, handler: LongModeMachine.codeAddress + 8)
            #expect(machine.cpu.run(maxInstructions: 100) == .halt)
            #expect(machine.cpu.rip == LongModeMachine.codeAddress + 9, "the #GP handler ran")
            let errorCode = try machine.memory.readValue(UInt64.self, at: machine.cpu.registers[4])
            let returnAddress = try machine.memory.readValue(UInt64.self, at: machine.cpu.registers[4] + 8)
            #expect(errorCode == 0 && returnAddress == LongModeMachine.codeAddress + 5, "faulting rdmsr/wrmsr, error code 0")
        }
    }
}

/// Hands a non-Sendable reference to a test thread that alone uses it.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// Where a test thread leaves the stop its CPU reached.
final class StopBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stop: X86Stop?
    var value: X86Stop? { lock.withLock { stop } }
    func set(_ value: X86Stop) { lock.withLock { stop = value } }
}
