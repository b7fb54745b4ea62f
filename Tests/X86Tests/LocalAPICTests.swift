import Machine
import Testing

@testable import X86

/// The emulator's local APIC: priority rules, EOI, the three timer modes and x2APIC, then the
/// CPU taking interrupts through the IDT (IF, the STI shadow, hlt until an interrupt).
@Suite struct LocalAPICTests {
    static let timerVector: UInt32 = 0x40

    func enabled() -> LocalAPIC {
        let apic = LocalAPIC()
        apic.write(offset: 0xF0, value: 0x1FF, now: 0)  // software enable, spurious vector 0xFF
        return apic
    }

    /// Logical destinations (Linux's `apic_flat` programs MSIs to logical ID 1 << cpu; before
    /// the emulator honoured them, Linux's virtio drivers waited forever for their first interrupt).
    @Test func logicalDestinationsMatchLDRInFlatAndClusterModelsAndX2APIC() {
        let apic = enabled()
        apic.write(offset: 0xE0, value: 0xFFFF_FFFF, now: 0)  // flat model
        apic.write(offset: 0xD0, value: 0x0100_0000, now: 0)  // logical ID bit 0 (CPU 0)
        #expect(apic.acceptsLogical(destination: 0x01) && apic.acceptsLogical(destination: 0x03))
        #expect(!apic.acceptsLogical(destination: 0x02) && !apic.acceptsLogical(destination: 0))
        apic.write(offset: 0xE0, value: 0x0FFF_FFFF, now: 0)  // cluster model: cluster 2, bit 1
        apic.write(offset: 0xD0, value: 0x2200_0000, now: 0)
        #expect(apic.acceptsLogical(destination: 0x23) && !apic.acceptsLogical(destination: 0x13))
        let x2apic = LocalAPIC(id: 0x13)
        #expect(x2apic.writeMSR(0x1B, 0xFEE0_0000 | 1 << 11 | 1 << 10, now: 0))
        #expect(x2apic.read(offset: 0xD0, now: 0) == 0x0001_0008, "cluster 1, bit 3")
        #expect(x2apic.acceptsLogical(destination: 0x0001_0008) && !x2apic.acceptsLogical(destination: 0x0000_0008))
    }

    @Test func higherPriorityClassPreemptsAndEOIEndsTheHighestInService() {
        let apic = enabled()
        apic.accept(vector: 0x31)
        apic.accept(vector: 0x51)
        #expect(apic.deliverableVector == 0x51)
        apic.acknowledge(0x51)
        #expect(apic.deliverableVector == nil, "class 3 waits while class 5 is in service")
        #expect(apic.read(offset: 0xA0, now: 0) == 0x50, "PPR follows the in-service class")
        apic.accept(vector: 0x61)
        #expect(apic.deliverableVector == 0x61, "class 6 preempts class 5")
        apic.acknowledge(0x61)
        apic.write(offset: 0xB0, value: 0, now: 0)  // EOI ends 0x61, the highest in service
        #expect(apic.deliverableVector == nil)
        apic.write(offset: 0xB0, value: 0, now: 0)  // ... then 0x51
        #expect(apic.deliverableVector == 0x31)
        apic.write(offset: 0x80, value: 0x40, now: 0)  // TPR class 4 masks class 3
        #expect(apic.deliverableVector == nil)
        apic.write(offset: 0x80, value: 0x20, now: 0)
        #expect(apic.deliverableVector == 0x31)
        #expect(apic.endOfInterrupts == 2)
        apic.acknowledge(0x31)
        apic.write(offset: 0xB0, value: 0, now: 0)
        apic.write(offset: 0xB0, value: 0, now: 0)  // an EOI with nothing in service is ignored
        #expect(apic.endOfInterrupts == 3)
    }

    @Test func illegalVectorsSetTheErrorStatusInsteadOfPending() {
        let apic = enabled()
        apic.accept(vector: 3)
        #expect(!apic.hasPending)
        #expect(apic.read(offset: 0x280, now: 0) == 1 << 6)
    }

    @Test func oneShotTimerFiresOnceAfterCountTimesDivisor() {
        let apic = enabled()
        apic.write(offset: 0x3E0, value: 0x0, now: 0)  // divide by 2
        apic.write(offset: 0x320, value: Self.timerVector, now: 0)  // one-shot, unmasked
        apic.write(offset: 0x380, value: 50, now: 1000)
        #expect(apic.read(offset: 0x390, now: 1040) == 30)
        apic.poll(now: 1099)
        #expect(!apic.hasPending)
        apic.poll(now: 1100)
        #expect(apic.deliverableVector == UInt8(Self.timerVector))
        #expect(apic.timerDeadline == nil)
        #expect(apic.read(offset: 0x390, now: 1200) == 0)
    }

    @Test func periodicTimerRearmsFromItsOwnDeadline() {
        let apic = enabled()
        apic.write(offset: 0x3E0, value: 0xB, now: 0)  // divide by 1
        apic.write(offset: 0x320, value: Self.timerVector | 1 << 17, now: 0)
        apic.write(offset: 0x380, value: 100, now: 0)
        apic.poll(now: 130)  // noticed late: the next period still ends at 200
        #expect(apic.timerDeadline == 200)
        apic.poll(now: 450)  // several periods missed: one interrupt, next deadline 500
        #expect(apic.timerDeadline == 500)
        #expect(apic.timerFirings == 2)
    }

    @Test func tscDeadlineModeFiresAtTheDeadlineAndDisarms() {
        let apic = enabled()
        #expect(apic.writeMSR(0x6E0, 5000, now: 0), "ignored (not #GP) outside deadline mode")
        #expect(apic.timerDeadline == nil)
        apic.write(offset: 0x320, value: Self.timerVector | 2 << 17, now: 0)
        #expect(apic.writeMSR(0x6E0, 5000, now: 0))
        #expect(apic.readMSR(0x6E0, now: 0) == 5000)
        apic.poll(now: 4999)
        #expect(!apic.hasPending)
        apic.poll(now: 5000)
        #expect(apic.deliverableVector == UInt8(Self.timerVector))
        #expect(apic.readMSR(0x6E0, now: 5001) == 0)
        apic.write(offset: 0x380, value: 10, now: 0)  // the initial count is ignored in deadline mode
        #expect(apic.timerDeadline == nil)
    }

    @Test func maskedTimerCountsButRaisesNothing() {
        let apic = enabled()
        apic.write(offset: 0x320, value: Self.timerVector | 1 << 16, now: 0)
        apic.write(offset: 0x380, value: 1, now: 0)
        apic.poll(now: 10)
        #expect(apic.timerFirings == 1)
        #expect(!apic.hasPending)
    }

    @Test func x2APICModeMovesTheRegistersToMSRs() {
        let apic = enabled()
        #expect(apic.readMSR(0x808, now: 0) == nil, "x2APIC MSRs #GP in xAPIC mode")
        #expect(!apic.writeMSR(0x1B, 0xFEE0_0000 | 1 << 10, now: 0), "x2APIC without enable is invalid")
        #expect(apic.writeMSR(0x1B, 0xFEE0_0000 | 3 << 10, now: 0))
        #expect(apic.mmioBase == nil, "the xAPIC page is gone in x2APIC mode")
        #expect(apic.writeMSR(0x808, 0x30, now: 0))
        #expect(apic.readMSR(0x80A, now: 0) == 0x30, "PPR")
        #expect(apic.writeMSR(0x830, 0x4_0041, now: 0), "ICR: fixed, shorthand self, vector 0x41")
        #expect(apic.deliverableVector == 0x41)
        #expect(apic.writeMSR(0x83F, 0x45, now: 0), "SELF IPI register")
        #expect(apic.deliverableVector == 0x45)
        #expect(apic.readMSR(0x83F, now: 0) == nil, "SELF IPI is write-only")
        #expect(apic.readMSR(0x802, now: 0) == 0, "the x2APIC ID is the full 32-bit ID")
    }

    @Test func anIPIToAnotherCPUGoesToThePlatform() {
        let apic = enabled()
        var sent: [(UInt32, UInt32)] = []
        apic.sendIPI = { sent.append(($0, $1)) }
        apic.write(offset: 0x310, value: 1 << 24, now: 0)
        apic.write(offset: 0x300, value: 0x4500, now: 0)  // INIT to APIC 1
        #expect(sent.count == 1 && sent[0].0 == 1 && sent[0].1 == 0x4500)
        #expect(!apic.hasPending)
    }
}

/// The CPU side: interrupts arrive through the IDT at instruction boundaries.
@Suite struct InterruptDeliveryTests {
    /// handler: mov ecx, eax / mov edi, 0xFEE000B0 / mov dword [rdi], 0 (EOI) / iretq
    static let handler: [UInt8] = [0x89, 0xC1, 0xBF, 0xB0, 0x00, 0xE0, 0xFE, 0xC7, 0x07, 0, 0, 0, 0, 0x48, 0xCF]
    static let handlerAddress: UInt64 = 0x11000

    func machine(code: [UInt8], clock: @escaping () -> UInt64 = { 0 }) throws -> LongModeMachine {
        let machine = try LongModeMachine(code: code)
        try machine.memory.write(Self.handler, at: Self.handlerAddress)
        try machine.memory.writeValue(UInt64(0x00CF_9200_0000_FFFF), at: 0x510)  // 0x10: data, for iretq's SS
        machine.cpu.gdtLimit = 0x17
        try machine.installGate(0x40, handler: Self.handlerAddress)
        machine.cpu.timestamp = clock
        machine.cpu.apic.write(offset: 0xF0, value: 0x1FF, now: 0)
        return machine
    }

    @Test func aPendingInterruptWaitsForIFAndTheSTIShadow() throws {
        // mov eax, 1 / sti / mov eax, 2 / mov eax, 3 / cli / hlt
        let code: [UInt8] = [0xB8, 1, 0, 0, 0, 0xFB, 0xB8, 2, 0, 0, 0, 0xB8, 3, 0, 0, 0, 0xFA, 0xF4]
        let machine = try machine(code: code)
        machine.cpu.raiseInterrupt(vector: 0x40)
        #expect(machine.cpu.run(maxInstructions: 100) == .halt)
        #expect(machine.cpu.registers[1] == 2, "taken after the instruction behind sti, not before")
        #expect(machine.cpu.registers[0] == 3, "iretq came back and the code ran on")
        #expect(machine.cpu.apic.delivered == 1)
        #expect(machine.cpu.apic.endOfInterrupts == 1)
    }

    @Test func hltSleepsUntilTheTimerAndResumesAfterIt() throws {
        // mov edi, 0xFEE00320 / mov dword [rdi], 0x40 | 2 << 17 (TSC-deadline) / mov ecx, 0x6E0 /
        // mov eax, 5000 / xor edx, edx / wrmsr / mov eax, 9 / sti / hlt / mov ebx, 7 / cli / hlt
        let code: [UInt8] = [
            0xBF, 0x20, 0x03, 0xE0, 0xFE, 0xC7, 0x07, 0x40, 0x00, 0x04, 0x00, 0xB9, 0xE0, 0x06, 0, 0, 0xB8, 0x88, 0x13, 0, 0,
            0x31, 0xD2, 0x0F, 0x30, 0xB8, 9, 0, 0, 0, 0xFB, 0xF4, 0xBB, 7, 0, 0, 0, 0xFA, 0xF4,
        ]
        var now: UInt64 = 0
        let machine = try machine(code: code) {
            now += 100
            return now
        }
        #expect(machine.cpu.run(maxInstructions: 1000) == .halt)
        #expect(machine.cpu.registers[1] == 9, "the handler ran")
        #expect(machine.cpu.registers[3] == 7, "execution resumed after hlt")
        #expect(now >= 5000, "not before the deadline")
        #expect(machine.cpu.apic.timerFirings == 1)
    }

    @Test func anInterruptRaisedByADeviceAccessComesAfterTheInstructionCompletes() throws {
        // sti / mov esi, 0xFEC00000 / mov dword [rsi], 5 / mov eax, 3 / cli / hlt: the store is a
        // device exit whose handling raises an interrupt (as a doorbell's completion does).
        let code: [UInt8] = [
            0xFB, 0xBE, 0x00, 0x00, 0xC0, 0xFE, 0xC7, 0x06, 5, 0, 0, 0, 0xB8, 3, 0, 0, 0, 0xFA, 0xF4,
        ]
        let machine = try machine(code: code)
        var accesses = 0
        var stop = machine.cpu.run(maxInstructions: 100)
        while stop == .deviceAccess, accesses < 5 {
            accesses += 1
            if accesses == 1 { machine.cpu.raiseInterrupt(vector: 0x40) }
            stop = machine.cpu.run(maxInstructions: 100)
        }
        #expect(stop == .halt)
        #expect(accesses == 1, "the store completed once; the interrupt did not make it run again")
        #expect(machine.cpu.apic.delivered == 1)
        #expect(machine.cpu.registers[1] == 0, "taken before the instruction after the store")
    }

    @Test func movSSHoldsOffAnInterruptForOneInstruction() throws {
        // sti / nop / mov esi, 0xFEC00000 / mov ss, [rsi] / mov eax, 7 / mov eax, 9 / cli / hlt.
        // The selector comes from a device read, during which the interrupt becomes pending.
        let code: [UInt8] = [
            0xFB, 0x90, 0xBE, 0x00, 0x00, 0xC0, 0xFE, 0x8E, 0x16, 0xB8, 7, 0, 0, 0, 0xB8, 9, 0, 0, 0, 0xFA, 0xF4,
        ]
        let machine = try machine(code: code)
        var stop = machine.cpu.run(maxInstructions: 100)
        #expect(stop == .deviceAccess)
        let access = try #require(machine.cpu.pendingDeviceAccess)
        machine.cpu.deviceLog.buffer.storeBytes(of: UInt16(0x10), toByteOffset: access.offset, as: UInt16.self)
        machine.cpu.raiseInterrupt(vector: 0x40)
        stop = machine.cpu.run(maxInstructions: 100)
        #expect(stop == .halt)
        #expect(machine.cpu.selectors[2] == 0x10)
        #expect(machine.cpu.registers[1] == 7, "taken after the instruction behind mov ss, not before it")
    }

    @Test func hltWithNothingThatCanWakeTheCPUEndsTheRun() throws {
        let machine = try machine(code: [0xFB, 0xF4])  // sti / hlt, no timer armed
        #expect(machine.cpu.run(maxInstructions: 100) == .halt)
        #expect(!machine.cpu.halted)
    }

    @Test func anInterruptStormCannotStarveAStopRequest() throws {
        // sti / jmp $ : a periodic timer with period 1 fires at every poll.
        let machine = try machine(code: [0xFB, 0xEB, 0xFE])
        var now: UInt64 = 0
        machine.cpu.timestamp = {
            now += 10
            return now
        }
        machine.cpu.apic.write(offset: 0x3E0, value: 0xB, now: 0)
        machine.cpu.apic.write(offset: 0x320, value: 0x40 | 1 << 17, now: 0)
        machine.cpu.apic.write(offset: 0x380, value: 1, now: 0)
        machine.cpu.raiseInterrupt(vector: 0x40)
        machine.cpu.requestStop()
        #expect(machine.cpu.run() == .interrupted, "a stop request ends the run within one chunk")
        #expect(machine.cpu.apic.delivered > 100, "the storm was taken")
        #expect(machine.cpu.apic.delivered - machine.cpu.apic.endOfInterrupts <= 1, "every handler but the last ended")
    }
}

/// Hostile interrupt traffic at the emulator's platform: what a guest can make devices send.
@Suite struct HostileInterruptTests {
    func engine() throws -> (EmulatorEngine, any InterruptController, IOBus) {
        let memory = try GuestMemory(size: 1 << 20)
        let entry = ProtectedModeEntry(entryPoint: 0x1000, ebx: 0, gdtBase: 0x500, gdtLimit: 0x27)
        let engine = EmulatorEngine(memory: memory, entry: entry)
        let mmio = IOBus()
        let controller = try engine.connectInterrupts(mmioBus: mmio)
        engine.cpu.apic.write(offset: 0xF0, value: 0x1FF, now: 0)
        return (engine, controller, mmio)
    }

    @Test func messagesToReservedVectorsOrNowhereAreRefusedNotDelivered() throws {
        let (engine, controller, _) = try engine()
        controller.signalMessage(MSIMessage(address: 0xFEE0_0000, data: 0x02))  // vector 2: reserved
        #expect(!engine.cpu.apic.hasPending)
        #expect(engine.cpu.apic.read(offset: 0x280, now: 0)! & (1 << 6) != 0, "received illegal vector")
        controller.signalMessage(MSIMessage(address: 0x1000, data: 0x41))  // not the APIC window: a DMA write
        controller.signalMessage(MSIMessage(address: 0xFEE0_5000, data: 0x41))  // APIC 5: no such CPU
        controller.signalMessage(MSIMessage(address: 0xFEE0_0000, data: 0x0441))  // NMI delivery mode
        #expect(!engine.cpu.apic.hasPending)
        controller.signalMessage(MSIMessage(address: 0xFEE0_0000, data: 0x41))
        #expect(engine.cpu.apic.deliverableVector == 0x41)
    }

    @Test func eoisWithNothingInServiceAndAStormOfLineChangesChangeNothingElse() throws {
        let (engine, controller, mmio) = try engine()
        for _ in 0..<1000 { engine.cpu.apic.write(offset: 0xB0, value: 0, now: 0) }  // EOI, nothing in service
        #expect(engine.cpu.apic.endOfInterrupts == 0)
        // The IOAPIC's registers sit on the bus; a level line toggled a million times while its
        // vector is still in service delivers once.
        let select: [UInt8] = [0x10 + 2 * 16, 0, 0, 0]
        let entry: [UInt8] = [0x41, 0x80, 0, 0]  // vector 0x41, level-triggered, unmasked
        select.withUnsafeBytes { _ = mmio.write(IOAPIC.base, from: $0) }
        entry.withUnsafeBytes { _ = mmio.write(IOAPIC.base + 0x10, from: $0) }
        for index in 0..<1_000_000 { controller.setLine(16, asserted: index % 2 == 0) }
        #expect(engine.cpu.apic.deliverableVector == 0x41)
        engine.cpu.apic.acknowledge(0x41)
        #expect(!engine.cpu.apic.hasPending, "Remote IRR holds the line until the EOI")
        controller.setLine(16, asserted: true)
        engine.cpu.apic.write(offset: 0xB0, value: 0, now: 0)  // EOI: the line is still up, so again
        #expect(engine.cpu.apic.deliverableVector == 0x41)
    }
}
