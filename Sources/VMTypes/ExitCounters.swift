/// Part of the results schema (`exits` of a result); the VMM fills it while a guest runs.
/// Exits by kind, recorded with every result so a report can say why one mode is faster.
public struct ExitCounters: Equatable, Sendable, Codable {
    public var portIO = 0
    public var mmio = 0
    public var halts = 0
    public var interruptions = 0
    public var unclaimedPortReads = 0
    public var unclaimedMMIOReads = 0
    /// Doorbells rung by the guest's drivers (virtio notifications, e1000 tail writes).
    public var notifications = 0
    /// Benchmark operations the guest performed during these exits (warm-ups and the latency
    /// pass included), so that exits per operation can be derived; 0 when not known.
    public var operations = 0
    /// Interrupts the CPU took (the emulator's local APIC; KVM's `irq_injections` statistic) and
    /// EOIs the guest wrote (the emulator only; KVM keeps no such statistic): nil when unknown.
    public var interrupts: Int?
    public var endOfInterrupts: Int?
    /// Reads of device interrupt-cause registers (e1000 ICR, virtio ISR): nil in older files.
    public var interruptCauseReads: Int?
    /// Doorbells the VMM's I/O thread took (KVM ioeventfds), which cost the vCPU no exit: nil
    /// when the run had no I/O thread (the emulator, `--no-io-thread`, older files).
    public var ioThreadNotifications: Int?
    /// MSI messages the VMM raised by writing an irqfd bound to a KVM GSI route, not an ioctl
    /// each: nil for engines without them (the emulator) and older files.
    public var interruptsByEventFD: Int?
    /// Of the I/O thread's doorbell wake-ups, those it found while polling rather than asleep:
    /// nil without an I/O thread.
    public var ioThreadPolledNotifications: Int?
    /// MMIO writes KVM buffered in its coalesced-MMIO ring instead of exiting, applied by the
    /// VMM at the next exit: nil when the run had no such ring (the emulator, older files).
    public var coalescedWrites: Int?
    /// With more than one vCPU, each vCPU's own exits and interrupts (vCPU order): which CPU of
    /// an SMP benchmark pays for what. nil with one vCPU and in older files.
    public var perVCPU: [VCPUExitCounters]?
    public init() {}

    /// Adds another boot's counts (the rounds of one result are merged this way).
    public mutating func add(_ other: ExitCounters) {
        portIO += other.portIO
        mmio += other.mmio
        halts += other.halts
        interruptions += other.interruptions
        unclaimedPortReads += other.unclaimedPortReads
        unclaimedMMIOReads += other.unclaimedMMIOReads
        notifications += other.notifications
        operations += other.operations
        interrupts = Self.sum(interrupts, other.interrupts)
        endOfInterrupts = Self.sum(endOfInterrupts, other.endOfInterrupts)
        interruptCauseReads = Self.sum(interruptCauseReads, other.interruptCauseReads)
        ioThreadNotifications = Self.sum(ioThreadNotifications, other.ioThreadNotifications)
        interruptsByEventFD = Self.sum(interruptsByEventFD, other.interruptsByEventFD)
        ioThreadPolledNotifications = Self.sum(ioThreadPolledNotifications, other.ioThreadPolledNotifications)
        coalescedWrites = Self.sum(coalescedWrites, other.coalescedWrites)
        if let mine = perVCPU, let theirs = other.perVCPU, mine.count == theirs.count {
            perVCPU = zip(mine, theirs).map { $0.adding($1) }
        } else if perVCPU != nil || other.perVCPU != nil {
            perVCPU = nil  // boots with different vCPU counts: no per-vCPU sum means anything
        }
    }

    static func sum(_ a: Int?, _ b: Int?) -> Int? { a == nil && b == nil ? nil : (a ?? 0) + (b ?? 0) }

    /// What happened between `earlier` and these counters (both of one VM, `earlier` taken
    /// first): every count is the difference; per-vCPU counts are dropped.
    public func since(_ earlier: ExitCounters) -> ExitCounters {
        func difference(_ a: Int?, _ b: Int?) -> Int? { a.map { $0 - (b ?? 0) } }
        var window = ExitCounters()
        window.portIO = portIO - earlier.portIO
        window.mmio = mmio - earlier.mmio
        window.halts = halts - earlier.halts
        window.interruptions = interruptions - earlier.interruptions
        window.unclaimedPortReads = unclaimedPortReads - earlier.unclaimedPortReads
        window.unclaimedMMIOReads = unclaimedMMIOReads - earlier.unclaimedMMIOReads
        window.notifications = notifications - earlier.notifications
        window.interrupts = difference(interrupts, earlier.interrupts)
        window.endOfInterrupts = difference(endOfInterrupts, earlier.endOfInterrupts)
        window.interruptCauseReads = difference(interruptCauseReads, earlier.interruptCauseReads)
        window.ioThreadNotifications = difference(ioThreadNotifications, earlier.ioThreadNotifications)
        window.interruptsByEventFD = difference(interruptsByEventFD, earlier.interruptsByEventFD)
        window.ioThreadPolledNotifications = difference(ioThreadPolledNotifications, earlier.ioThreadPolledNotifications)
        window.coalescedWrites = difference(coalescedWrites, earlier.coalescedWrites)
        return window
    }

    /// (port I/O + MMIO exits) per operation.
    public var exitsPerOperation: Double? { operations > 0 ? Double(portIO + mmio) / Double(operations) : nil }
    public var notificationsPerOperation: Double? { operations > 0 ? Double(notifications) / Double(operations) : nil }
    public var interruptsPerOperation: Double? {
        guard operations > 0, let interrupts else { return nil }
        return Double(interrupts) / Double(operations)
    }
    /// Per vCPU, (port I/O + MMIO exits) and interrupts per operation of the benchmark.
    public var perVCPURates: [(exits: Double?, interrupts: Double?)]? {
        guard let perVCPU, operations > 0 else { return nil }
        let operations = Double(operations)
        return perVCPU.map { (Double($0.portIO + $0.mmio) / operations, $0.interrupts.map { Double($0) / operations }) }
    }
    public var interruptCauseReadsPerOperation: Double? {
        guard operations > 0, let interruptCauseReads else { return nil }
        return Double(interruptCauseReads) / Double(operations)
    }
}

/// Part of the results schema (`exits.perVCPU`): one vCPU's exits by kind and the interrupts it
/// took (nil when its engine does not count them).
public struct VCPUExitCounters: Equatable, Sendable, Codable {
    public var portIO = 0
    public var mmio = 0
    public var halts = 0
    public var interruptions = 0
    public var interrupts: Int?

    public init(portIO: Int = 0, mmio: Int = 0, halts: Int = 0, interruptions: Int = 0, interrupts: Int? = nil) {
        self.portIO = portIO
        self.mmio = mmio
        self.halts = halts
        self.interruptions = interruptions
        self.interrupts = interrupts
    }

    func adding(_ other: VCPUExitCounters) -> VCPUExitCounters {
        VCPUExitCounters(
            portIO: portIO + other.portIO, mmio: mmio + other.mmio, halts: halts + other.halts,
            interruptions: interruptions + other.interruptions, interrupts: ExitCounters.sum(interrupts, other.interrupts))
    }

    public var counts: [Int] { [portIO, mmio, halts, interruptions] + (interrupts.map { [$0] } ?? []) }
}

/// Part of the results schema (`guestInterrupts` of a result): device interrupts as the guest's
/// own handlers counted them, for every system that runs the guest (QEMU peers included, where
/// the VMM's counters are not available). Spurious: the handler found the cause register clear.
public struct GuestInterruptCounts: Equatable, Sendable, Codable {
    /// Larger counts are a broken line, not a boot's worth of interrupts.
    public static let maximum: UInt64 = 1 << 48
    public var taken: Int
    public var spurious: Int
    /// Operations of the boot (warm-ups and the latency pass included), for per-operation rates.
    public var operations: Int

    public init(taken: Int, spurious: Int, operations: Int) {
        self.taken = taken
        self.spurious = spurious
        self.operations = operations
    }

    public mutating func add(_ other: GuestInterruptCounts) {
        taken += other.taken
        spurious += other.spurious
        operations += other.operations
    }

    public var takenPerOperation: Double? { operations > 0 ? Double(taken) / Double(operations) : nil }
    public var spuriousPerOperation: Double? { operations > 0 ? Double(spurious) / Double(operations) : nil }
}
