import Foundation
import Testing

@testable import Machine

/// The IOAPIC as a guest and a local APIC see it: redirection entries, edge and level pins,
/// Remote IRR and EOI, masking.
@Suite struct IOAPICTests {
    final class Delivered {
        var vectors: [(UInt8, Bool)] = []
    }

    func make() -> (IOAPIC, Delivered) {
        let delivered = Delivered()
        return (IOAPIC { delivered.vectors.append(($0, $1)) }, delivered)
    }

    func program(_ ioapic: IOAPIC, pin: Int, low: UInt32, high: UInt32 = 0) {
        write(ioapic, 0x00, UInt64(0x10 + 2 * pin))
        write(ioapic, 0x10, UInt64(low))
        write(ioapic, 0x00, UInt64(0x11 + 2 * pin))
        write(ioapic, 0x10, UInt64(high))
    }

    @Test func versionAndEntriesReadBack() {
        let (ioapic, _) = make()
        write(ioapic, 0x00, 1)
        #expect(read(ioapic, 0x10) == 0x0017_0020, "24 pins, version 0x20")
        #expect(ioapic.redirectionEntry(5) & (1 << 16) != 0, "masked at reset")
        program(ioapic, pin: 5, low: 0xA040 | 1 << 14 | 1 << 12, high: 0x0300_0000)  // level, vector 0x40
        write(ioapic, 0x00, 0x10 + 10)
        #expect(read(ioapic, 0x10) == 0xA040, "Remote IRR and delivery status are the IOAPIC's, not the guest's")
        write(ioapic, 0x00, 0x11 + 10)
        #expect(read(ioapic, 0x10) == 0x0300_0000)
    }

    @Test func aLevelPinDeliversOnceUntilEOIThenAgainWhileStillAsserted() {
        let (ioapic, delivered) = make()
        program(ioapic, pin: 16, low: 0x8041)  // level-triggered, vector 0x41, unmasked
        ioapic.setLine(16, asserted: true)
        ioapic.setLine(16, asserted: true)
        #expect(delivered.vectors.map(\.0) == [0x41])
        #expect(delivered.vectors[0].1, "level-triggered: the APIC sets TMR so the EOI comes back")
        #expect(ioapic.redirectionEntry(16) & (1 << 14) != 0, "Remote IRR")
        ioapic.endOfInterrupt(vector: 0x41)  // the handler did not clear the cause: interrupt again
        #expect(delivered.vectors.count == 2)
        ioapic.setLine(16, asserted: false)
        ioapic.endOfInterrupt(vector: 0x41)
        #expect(delivered.vectors.count == 2)
        #expect(ioapic.redirectionEntry(16) & (1 << 14) == 0)
        ioapic.endOfInterrupt(vector: 0x41)  // an EOI with nothing in service changes nothing
        #expect(delivered.vectors.count == 2)
        // The directed-EOI register does what the broadcast does.
        ioapic.setLine(16, asserted: true)
        write(ioapic, 0x40, 0x41)
        #expect(delivered.vectors.count == 4)
    }

    @Test func maskingHoldsALevelAndLosesAnEdge() {
        let (ioapic, delivered) = make()
        program(ioapic, pin: 17, low: 0x1_8042)  // level, masked
        ioapic.setLine(17, asserted: true)
        #expect(delivered.vectors.isEmpty)
        program(ioapic, pin: 17, low: 0x8042)  // unmasked while asserted: delivered now
        #expect(delivered.vectors.map(\.0) == [0x42])
        program(ioapic, pin: 2, low: 0x1_0043)  // edge, masked
        ioapic.setLine(2, asserted: true)
        ioapic.setLine(2, asserted: false)
        program(ioapic, pin: 2, low: 0x0043)
        #expect(delivered.vectors.count == 1, "an edge while masked is lost")
        ioapic.setLine(2, asserted: true)
        ioapic.setLine(2, asserted: true)  // held high: no second edge
        #expect(delivered.vectors.map(\.0) == [0x42, 0x43])
        #expect(delivered.vectors[1].1 == false)
    }

    @Test func deliveryModesItCannotCarryOutAreCountedNotSent() {
        let (ioapic, delivered) = make()
        program(ioapic, pin: 3, low: 0x0400 | 0x44)  // NMI delivery mode
        program(ioapic, pin: 4, low: 0x45, high: 0x0500_0000)  // physical APIC 5: no such CPU
        ioapic.setLine(3, asserted: true)
        ioapic.setLine(4, asserted: true)
        ioapic.setLine(99, asserted: true)  // not a pin: ignored
        #expect(delivered.vectors.isEmpty)
        #expect(ioapic.undeliverable == 2)
    }
}

/// e1000 interrupts as the 82540EM raises them, seen from the interrupt controller.
@Suite struct E1000InterruptTests {
    @Test func icrIsReadToClearAndINTxFollowsICRAndIMS() throws {
        let memory = try GuestMemory(size: 1 << 20)
        let mmio = IOBus()
        let interrupts = InterruptRecorder()
        let platform = Platform(memory: memory, portBus: IOBus(), mmioBus: mmio, interrupts: interrupts)
        let nic = E1000(memory: memory, mmio: mmio, peer: NetworkPeer(mode: .sink))
        try nic.attach(to: platform)
        let gsi = try #require(nic.configuration.interruptLine?.gsi)
        #expect(gsi == 17 && nic.configuration.bytes[0x3C] == 17, "slot 1: INTA# on IOAPIC input 17")
        _ = nic.configuration.write(offset: 4, count: 2, value: 0x6)
        // One frame on a 4-descriptor transmit ring, asking for status.
        try memory.writeValue(UInt64(0x8000), at: 0x4000)
        try memory.writeValue(UInt16(64), at: 0x4008)
        try memory.writeValue(UInt8(0x09), at: 0x400B)  // EOP | RS
        write(nic, 0x3800, 0x4000)
        write(nic, 0x3808, 64)
        write(nic, 0x0400, 0x2)
        write(nic, 0x3818, 1)
        #expect(interrupts.levels[gsi] != true, "causes latch, but IMS is clear")
        write(nic, 0x00D0, 0x01)  // IMS: TXDW
        #expect(interrupts.levels[gsi] == true)
        #expect(read(nic, 0x00C0) == 0x03, "TXDW and TXQE")
        #expect(interrupts.levels[gsi] == false, "reading ICR clears it and drops INTA#")
        #expect(read(nic, 0x00C0) == 0)
        #expect(nic.interruptCauseReads == 2)
        write(nic, 0x00C8, 0x01)  // ICS raises a cause by hand
        #expect(interrupts.levels[gsi] == true)
        write(nic, 0x00D8, 0x01)  // IMC masks it again
        #expect(interrupts.levels[gsi] == false)
        // With Interrupt Disable set in the command register the line stays low; the status
        // register still shows the request.
        _ = nic.configuration.write(offset: 4, count: 2, value: 0x406)
        write(nic, 0x00D0, 0x01)
        #expect(interrupts.levels[gsi] == false)
        #expect(nic.configuration.bytes[0x06] & 0x08 != 0)
        _ = nic.configuration.write(offset: 4, count: 2, value: 0x006)
        #expect(interrupts.levels[gsi] == true)
        #expect(interrupts.assertions[gsi] == 3)
    }
}

/// The e1000's interrupt throttling (ITR) and the device timers it runs on, on a clock the test
/// moves by hand.
@Suite struct InterruptThrottlingTests {
    final class ManualClock: @unchecked Sendable {
        var nanoseconds: UInt64 = 1_000_000
    }

    @Test func itrHoldsINTxUntilTheIntervalSinceItLastRoseHasPassed() throws {
        let memory = try GuestMemory(size: 1 << 20)
        let mmio = IOBus()
        let interrupts = InterruptRecorder()
        let clock = ManualClock()
        let timers = DeviceTimers(now: { clock.nanoseconds })
        let platform = Platform(memory: memory, portBus: IOBus(), mmioBus: mmio, interrupts: interrupts, timers: timers)
        let nic = E1000(memory: memory, mmio: mmio, peer: NetworkPeer(mode: .sink))
        try nic.attach(to: platform)
        let gsi = try #require(nic.configuration.interruptLine?.gsi)
        _ = nic.configuration.write(offset: 4, count: 2, value: 0x6)
        write(nic, 0x00C4, 100)  // ITR: 100 x 256 ns = 25.6 us
        write(nic, 0x00D0, 0x01)  // IMS: TXDW
        write(nic, 0x00C8, 0x01)  // ICS: the first interrupt is not held
        #expect(interrupts.levels[gsi] == true)
        #expect(read(nic, 0x00C0) == 0x01)
        #expect(interrupts.levels[gsi] == false)
        clock.nanoseconds += 10_000
        write(nic, 0x00C8, 0x01)
        write(nic, 0x00C8, 0x01)
        #expect(interrupts.levels[gsi] == false, "10 us after the last: held")
        #expect(nic.throttledInterrupts == 1 && timers.nextDeadline == 1_000_000 + 25_600)
        clock.nanoseconds += 15_599
        #expect(timers.runDue() == 0 && interrupts.levels[gsi] == false)
        clock.nanoseconds += 1
        #expect(timers.runDue() == 1)
        #expect(interrupts.levels[gsi] == true, "the interval is over: INTA# rises for the causes held")
        #expect(read(nic, 0x00C0) == 0x01 && interrupts.assertions[gsi] == 2)
        // A cause the driver clears while it is held raises nothing when the timer fires.
        write(nic, 0x00C8, 0x01)
        #expect(timers.nextDeadline != nil)
        #expect(read(nic, 0x00C0) == 0x01)
        clock.nanoseconds += 30_000
        timers.runDue()
        #expect(interrupts.levels[gsi] == false && interrupts.assertions[gsi] == 2)
        // ITR 0: no throttling at all.
        write(nic, 0x00C4, 0)
        for _ in 0..<3 {
            write(nic, 0x00C8, 0x01)
            #expect(interrupts.levels[gsi] == true)
            _ = read(nic, 0x00C0)
        }
        #expect(interrupts.assertions[gsi] == 5 && timers.nextDeadline == nil)
        // A reset drops a held interrupt's timer.
        write(nic, 0x00C4, 0xFFFF)
        write(nic, 0x00D0, 0x01)
        write(nic, 0x00C8, 0x01)
        #expect(timers.nextDeadline != nil)
        nic.reset()
        #expect(timers.nextDeadline == nil)
    }

    @Test func timersRunInDeadlineOrderAndCancelledOnesNever() {
        let clock = ManualClock()
        let timers = DeviceTimers(now: { clock.nanoseconds })
        var ran: [Int] = []
        timers.schedule(at: clock.nanoseconds + 300) { ran.append(3) }
        let cancelled = timers.schedule(at: clock.nanoseconds + 200) { ran.append(2) }
        timers.schedule(at: clock.nanoseconds + 100) {
            ran.append(1)
            timers.schedule(at: clock.nanoseconds) { ran.append(10) }  // due at once: runs in the same pass
        }
        timers.cancel(cancelled)
        #expect(timers.nextDeadline == clock.nanoseconds + 100)
        clock.nanoseconds += 1000
        #expect(timers.runDue() == 3)
        #expect(ran == [1, 3, 10] && timers.nextDeadline == nil, "by deadline, the one scheduled late last")
    }

    /// On the real clock, a timer that comes due calls the wake action from another thread (the
    /// VM's kick of its vCPU), however long the host takes to get there.
    @Test func aDueTimerWakesTheVCPU() {
        let timers = DeviceTimers()
        let woken = DispatchSemaphore(value: 0)
        timers.setWake { woken.signal() }
        timers.schedule(at: timers.now() + 1_000_000) {}
        #expect(woken.wait(timeout: .now() + 60) == .success)
        timers.shutdown()
        #expect(timers.nextDeadline == nil)
    }
}

/// virtio-pci interrupts: MSI-X with masking and pending bits, event-index suppression, and
/// the INTx fallback with its ISR read.
@Suite struct VirtioInterruptTests {
    let memory: GuestMemory
    let interrupts = InterruptRecorder()
    let transport: VirtioPCITransport
    let driver: TransportDriver

    init() throws {
        memory = try GuestMemory(size: 4 << 20)
        let mmio = IOBus()
        let platform = Platform(memory: memory, portBus: IOBus(), mmioBus: mmio, interrupts: interrupts)
        transport = VirtioPCITransport(model: VirtioNet(peer: NetworkPeer(mode: .sink)), memory: memory, mmio: mmio)
        try transport.attach(to: platform)
        _ = transport.configuration.write(offset: 4, count: 2, value: 0x6)
        driver = TransportDriver(transport: transport)
    }

    /// Brings up queue 0 (receive, unused) and the transmit queue at the TestQueue layout.
    func bringUp(eventIndex: Bool) throws -> TestQueue {
        let rx = try TestQueue(memory: memory)
        driver.bringUp(queues: [rx], extra: 1 << 5 | (eventIndex ? 1 << 29 : 0))
        let txQueue = VirtQueue(maximumSize: 8)
        txQueue.descriptorTable = 0x20000
        txQueue.driverRing = 0x21000
        txQueue.deviceRing = 0x22000
        try memory.bytes(at: 0x20000, count: 0x3000).initializeMemory(as: UInt8.self, repeating: 0)
        driver.write(0x16, 1, width: 2)
        driver.write(0x18, 8, width: 2)
        driver.write(0x20, 0x20000)
        driver.write(0x28, 0x21000)
        driver.write(0x30, 0x22000)
        driver.write(0x1C, 1, width: 2)
        let frame = [UInt8](repeating: 0, count: 12) + NetworkPeer.frame(sequence: 1, length: 64)
        try memory.write(frame, at: 0x70000)
        return TestQueue(memory: memory, queue: txQueue)
    }

    func send(_ tx: TestQueue, slot: UInt16) throws {
        try tx.descriptor(slot, address: 0x70000, length: 76, flags: 0)
        try tx.offer(slot)
        driver.write(0x3004, 1, width: 2)
    }

    func msixCapability() -> Int {
        var cursor = Int(transport.configuration.bytes[0x34])
        while transport.configuration.bytes[cursor] != 0x11 { cursor = Int(transport.configuration.bytes[cursor + 1]) }
        return cursor
    }

    @Test func msixSendsTheQueueVectorAndHoldsItWhileMasked() throws {
        let tx = try bringUp(eventIndex: false)
        let capability = msixCapability()
        #expect(transport.configuration.bytes[capability + 2] == 2, "three vectors: configuration and two queues")
        _ = transport.configuration.write(offset: capability + 2, count: 2, value: 0x8000)  // MSI-X enable
        // Vector 1: address 0xFEE00000, data 0x51; unmasked.
        driver.write(0x4010, 0xFEE0_0000)
        driver.write(0x4014, 0)
        driver.write(0x4018, 0x51)
        driver.write(0x401C, 0)
        driver.write(0x16, 1, width: 2)
        driver.write(0x1A, 1, width: 2)
        #expect(driver.read(0x1A, width: 2) == 1)
        driver.write(0x1A, 7, width: 2)
        #expect(driver.read(0x1A, width: 2) == 0xFFFF, "a vector the table does not have reads back as NO_VECTOR")
        driver.write(0x1A, 1, width: 2)
        try send(tx, slot: 0)
        #expect(interrupts.messages == [MSIMessage(address: 0xFEE0_0000, data: 0x51)])
        #expect(interrupts.assertions.isEmpty, "no INTx while MSI-X is on")
        driver.write(0x401C, 1)  // mask vector 1
        try send(tx, slot: 1)
        #expect(interrupts.messages.count == 1)
        #expect(driver.read(0x5000) & 0b10 != 0, "pending bit")
        driver.write(0x401C, 0)  // unmask: the pending message goes now
        #expect(interrupts.messages.count == 2)
        #expect(driver.read(0x5000) == 0)
        // The function mask in message control holds every vector the same way.
        _ = transport.configuration.write(offset: capability + 2, count: 2, value: 0xC000)
        try send(tx, slot: 2)
        #expect(interrupts.messages.count == 2)
        _ = transport.configuration.write(offset: capability + 2, count: 2, value: 0x8000)
        #expect(interrupts.messages.count == 3)
        #expect(driver.read(0x4018) == 0x51, "the table reads back")
    }

    @Test func eventIndexSuppressesInterruptsTheDriverDidNotAskFor() throws {
        let tx = try bringUp(eventIndex: true)
        // INTx mode. used_event = 2: the driver wants an interrupt once the third buffer is used.
        try memory.writeValue(UInt16(2), at: tx.avail + 4 + 2 * 8)
        try send(tx, slot: 0)
        try send(tx, slot: 1)
        let gsi = try #require(transport.configuration.interruptLine?.gsi)
        #expect(interrupts.levels[gsi] != true)
        #expect(try memory.readValue(UInt16.self, at: tx.used + 4 + 8 * 8) == 2, "avail_event published")
        try send(tx, slot: 2)
        #expect(interrupts.levels[gsi] == true)
        #expect(driver.read(0x1000, width: 1) == 1, "ISR: a queue interrupt")
        #expect(interrupts.levels[gsi] == false, "reading the ISR clears it and drops INTA#")
        #expect(driver.read(0x1000, width: 1) == 0)
        #expect(transport.interruptCauseReads == 2)
    }

    @Test func withoutEventIndexTheNoInterruptFlagDecides() throws {
        let tx = try bringUp(eventIndex: false)
        let gsi = try #require(transport.configuration.interruptLine?.gsi)
        try memory.writeValue(UInt16(1), at: tx.avail)  // VIRTQ_AVAIL_F_NO_INTERRUPT
        try send(tx, slot: 0)
        #expect(interrupts.levels[gsi] != true)
        try memory.writeValue(UInt16(0), at: tx.avail)
        try send(tx, slot: 1)
        #expect(interrupts.levels[gsi] == true)
    }
}
