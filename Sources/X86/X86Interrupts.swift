import Glibc

/// External interrupts: the local APIC's pending vectors are taken at instruction boundaries
/// when IF is set and no STI shadow is in force, through the IDT like an exception without an
/// error code; `hlt` with IF set sleeps until one arrives.
///
/// The per-instruction cost while nothing is pending is one Bool load (`interruptWork`), kept
/// true only while the APIC has a pending vector, an armed timer, or the CPU is halted.
extension X86CPU {
    /// How many instructions may retire between two reads of the clock while a timer is armed.
    static let timerPollInterval = 64

    /// Recomputes `interruptWork` after anything that may have changed the APIC's state.
    func refreshInterruptWork() {
        interruptWork = halted || waitingForStartup || apic.timerDeadline != nil || apic.hasPending
    }

    /// Raises `vector` at this CPU's local APIC (an IOAPIC or MSI delivery, a device model in
    /// tests). With one vCPU it must be called on the thread that runs the CPU; with several,
    /// device work runs on whichever vCPU's thread exited, so the vector is posted.
    public func raiseInterrupt(vector: UInt8, levelTriggered: Bool = false) {
        if processors != nil { return postInterrupt(vector: vector, levelTriggered: levelTriggered) }
        apic.accept(vector: vector, levelTriggered: levelTriggered)
        refreshInterruptWork()
    }

    /// Called at an instruction boundary while `interruptWork` is set. Returns a stop for
    /// `run` (a halted CPU nothing can wake, or a stop request while halted), else nil.
    @inline(never)
    func serviceInterrupts() -> X86Stop? {
        if hasMail { readMail() }
        if apic.timerDeadline != nil {
            timerPollCountdown -= 1
            if timerPollCountdown <= 0 || halted {
                timerPollCountdown = Self.timerPollInterval
                apic.poll(now: timestamp())
            }
        }
        while true {
            if !waitingForStartup && takeInterruptIfAllowed() { break }
            guard halted || waitingForStartup else { break }
            // Halted: an interrupt that is still to come is the only way on.
            if stopRequested.exchange(false, ordering: .relaxed) { return .interrupted }
            if processors != nil {
                // Another vCPU may send an IPI, INIT or SIPI at any time: sleep on the mail
                // (polling the clock instead while the APIC timer is armed).
                if apic.timerDeadline == nil { sleepForMail(nanoseconds: 10_000_000) } else { sched_yield() }
                if hasMail { readMail() }
                if apic.timerDeadline != nil { apic.poll(now: timestamp()) }
                continue
            }
            guard apic.timerDeadline != nil else {
                halted = false
                refreshInterruptWork()
                return .halt
            }
            sched_yield()
            apic.poll(now: timestamp())
        }
        refreshInterruptWork()
        return nil
    }

    /// Delivers the highest deliverable vector if IF and the shadow allow it.
    private func takeInterruptIfAllowed() -> Bool {
        guard apic.hasPending, otherFlags & Self.interruptFlag != 0, retired != interruptShadowEnds,
            let vector = apic.deliverableVector
        else { return false }
        apic.acknowledge(vector)
        halted = false
        deliverException(vector: vector, errorCode: nil, returnAddress: rip)
        return true
    }

    /// `hlt` at CPL0: with IF clear nothing can ever wake the CPU (NMIs are not modelled), so
    /// the run ends; with IF set the CPU sleeps until an interrupt is taken.
    func halt() {
        // With other vCPUs, even `cli; hlt` is not the end: an INIT can restart this one, and
        // the others go on (a parked application processor); the VM ends when the guest says.
        if otherFlags & Self.interruptFlag == 0 && processors == nil {
            stopReason = .halt
            return
        }
        halted = true
        interruptWork = true
    }

    /// `sti` with IF clear: the next instruction runs before any interrupt (the STI shadow).
    func noteInterruptsEnabledBySTI(wasEnabled: Bool) {
        if !wasEnabled { interruptShadowEnds = retired &+ 1 }
        if apic.hasPending { interruptWork = true }
    }

    // MARK: The APIC's register page and MSRs

    /// The xAPIC page claims the access: 32-bit aligned registers, other sizes read as zero.
    func apicPage(contains physical: UInt64) -> Bool {
        guard let base = apic.mmioBase else { return false }
        return physical & ~0xFFF == base
    }

    func apicRead(physical: UInt64, size: UInt8) -> UInt64 {
        let offset = Int(physical & 0xFFF)
        guard offset & 3 == 0 else { return 0 }
        let value = apic.read(offset: offset & ~0xF, now: timestamp()) ?? 0
        return UInt64(value) & Self.mask(size: size)
    }

    func apicWrite(physical: UInt64, size: UInt8, _ value: UInt64) {
        let offset = Int(physical & 0xFFF)
        guard offset & 0xF == 0, size >= 4 else { return }
        apic.write(offset: offset, value: UInt32(truncatingIfNeeded: value), now: timestamp())
        timerPollCountdown = 0
        refreshInterruptWork()
    }

    func apicReadMSR(_ index: UInt32) throws(X86Fault) -> UInt64 {
        guard let value = apic.readMSR(index, now: timestamp()) else {
            throw .exception(vector: X86Vector.generalProtection, errorCode: 0)
        }
        return value
    }

    func apicWriteMSR(_ index: UInt32, _ value: UInt64) throws(X86Fault) {
        guard apic.writeMSR(index, value, now: timestamp()) else {
            throw .exception(vector: X86Vector.generalProtection, errorCode: 0)
        }
        timerPollCountdown = 0
        refreshInterruptWork()
    }
}
