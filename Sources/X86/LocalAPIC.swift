/// The emulator's local APIC (Intel SDM vol. 3 ch. 11): the xAPIC register page and the x2APIC
/// MSRs over one register file; IRR/ISR with priority classes, TPR/PPR and EOI; the timer in
/// one-shot, periodic and TSC-deadline mode; and the ICR, whose self-IPIs it delivers (IPIs to
/// other CPUs are handed to `sendIPI`, which the SMP platform provides).
///
/// The timer counts at the TSC rate divided by the divide configuration: this model's "bus
/// clock" is the TSC, so a guest converts counts to time with the TSC frequency it already
/// knows. Time is whatever `now` the CPU passes in (its rdtsc source); the model never reads a
/// clock itself, so tests drive it with any timeline they like.
public final class LocalAPIC {
    public static let defaultBase: UInt64 = 0xFEE0_0000
    public static let spuriousVectorOffset = 0xF0

    // Register offsets (xAPIC MMIO; x2APIC MSR = 0x800 + offset >> 4).
    enum Register {
        static let id = 0x20, version = 0x30, taskPriority = 0x80, arbitrationPriority = 0x90
        static let processorPriority = 0xA0, eoi = 0xB0, logicalDestination = 0xD0
        static let destinationFormat = 0xE0, spurious = 0xF0, isr = 0x100, tmr = 0x180, irr = 0x200
        static let errorStatus = 0x280, icrLow = 0x300, icrHigh = 0x310, lvtTimer = 0x320
        static let lvtThermal = 0x330, lvtPerformance = 0x340, lvtLint0 = 0x350, lvtLint1 = 0x360
        static let lvtError = 0x370, timerInitialCount = 0x380, timerCurrentCount = 0x390
        static let timerDivide = 0x3E0, selfIPI = 0x3F0
    }

    public enum TimerMode: UInt32 { case oneShot = 0, periodic = 1, tscDeadline = 2 }

    public let id: UInt32
    /// IA32_APIC_BASE: base address, enable (bit 11), x2APIC (bit 10), BSP (bit 8).
    public private(set) var baseMSR: UInt64
    var taskPriority: UInt32 = 0
    var spurious: UInt32 = 0xFF
    var logicalDestination: UInt32 = 0
    var destinationFormat: UInt32 = 0xFFFF_FFFF
    var errorStatus: UInt32 = 0
    var icr: UInt64 = 0
    /// LVT timer, thermal, performance, LINT0, LINT1, error: all masked at reset.
    var lvt: [UInt32] = Array(repeating: 0x1_0000, count: 6)
    var initialCount: UInt32 = 0
    var divideConfiguration: UInt32 = 0
    /// IRR, ISR and TMR as 256-bit sets (four words each).
    var irr: [UInt64] = [0, 0, 0, 0]
    var isr: [UInt64] = [0, 0, 0, 0]
    var tmr: [UInt64] = [0, 0, 0, 0]

    /// When the timer fires next (TSC), nil when it is not armed.
    public private(set) var timerDeadline: UInt64?
    /// Start of the current one-shot/periodic count, for the current-count register.
    var timerStart: UInt64 = 0
    /// IA32_TSC_DEADLINE as the guest wrote it.
    var tscDeadline: UInt64 = 0

    /// Counters a report can use: interrupts accepted by the CPU, EOIs, timer expiries.
    public private(set) var delivered = 0
    public private(set) var endOfInterrupts = 0
    public private(set) var timerFirings = 0
    /// Called with (destination, ICR low word) for an IPI this APIC cannot deliver to itself.
    public var sendIPI: ((UInt32, UInt32) -> Void)?
    /// Called with the vector of a level-triggered interrupt the guest ended (the IOAPIC's EOI).
    public var levelTriggeredEOI: ((UInt8) -> Void)?

    public init(id: UInt32 = 0, bootstrap: Bool = true) {
        self.id = id
        baseMSR = Self.defaultBase | (1 << 11) | (bootstrap ? 1 << 8 : 0)
    }

    /// INIT: every register to its power-on value except the ID and IA32_APIC_BASE (the counters
    /// a report reads are kept).
    public func reset() {
        taskPriority = 0
        spurious = 0xFF
        logicalDestination = 0
        destinationFormat = 0xFFFF_FFFF
        errorStatus = 0
        icr = 0
        lvt = Array(repeating: 0x1_0000, count: 6)
        initialCount = 0
        divideConfiguration = 0
        irr = [0, 0, 0, 0]
        isr = [0, 0, 0, 0]
        tmr = [0, 0, 0, 0]
        timerDeadline = nil
        tscDeadline = 0
    }

    public var isEnabled: Bool { baseMSR & (1 << 11) != 0 }
    public var isX2APIC: Bool { baseMSR & (1 << 10) != 0 }

    /// x2APIC mode's read-only logical ID: cluster (ID bits 19:4) in 31:16, one bit of 16 in 15:0.
    var x2APICLogicalID: UInt32 { (id >> 4) << 16 | 1 << (id & 0xF) }

    /// Whether a logical-mode destination (an MSI's or an IPI's with DM=1) names this APIC: in
    /// x2APIC mode cluster and bit against its logical ID; in xAPIC mode against LDR, as a bit
    /// mask in the flat model (DFR 0xFFFFFFFF, Linux's `apic_flat`) or cluster and mask nibbles
    /// in the cluster model.
    public func acceptsLogical(destination: UInt32) -> Bool {
        if isX2APIC {
            let logicalID = x2APICLogicalID
            return destination >> 16 == logicalID >> 16 && destination & logicalID & 0xFFFF != 0
        }
        let logicalID = logicalDestination >> 24
        if destinationFormat >> 28 == 0xF { return destination & logicalID & 0xFF != 0 }
        return (destination >> 4) & 0xF == logicalID >> 4 && destination & logicalID & 0xF != 0
    }
    var softwareEnabled: Bool { spurious & 0x100 != 0 }
    /// Guest-physical address of the xAPIC page while the APIC is enabled in xAPIC mode.
    public var mmioBase: UInt64? { isEnabled && !isX2APIC ? baseMSR & 0xF_FFFF_F000 : nil }

    // MARK: Interrupt state

    static func highest(_ set: [UInt64]) -> Int? {
        for word in stride(from: 3, through: 0, by: -1) where set[word] != 0 {
            return word * 64 + 63 - set[word].leadingZeroBitCount
        }
        return nil
    }

    var processorPriority: UInt32 {
        let inService = UInt32(Self.highest(isr) ?? 0)
        return taskPriority & 0xF0 >= inService & 0xF0 ? taskPriority & 0xFF : inService & 0xF0
    }

    /// Makes `vector` pending (an edge, or a level the IOAPIC holds). Vectors 0–15 are illegal
    /// for fixed delivery: they set the receive-illegal-vector error instead, as hardware does.
    public func accept(vector: UInt8, levelTriggered: Bool = false) {
        guard vector >= 16 else {
            errorStatus |= 1 << 6
            return
        }
        let word = Int(vector >> 6)
        let bit = UInt64(1) << UInt64(vector & 63)
        irr[word] |= bit
        if levelTriggered { tmr[word] |= bit } else { tmr[word] &= ~bit }
    }

    /// The vector the CPU would take now (IF permitting): the highest pending one whose
    /// priority class is above the processor priority.
    public var deliverableVector: UInt8? {
        guard isEnabled, let pending = Self.highest(irr) else { return nil }
        return UInt32(pending) & 0xF0 > processorPriority & 0xF0 ? UInt8(pending) : nil
    }

    /// True while any vector is pending, deliverable or not.
    public var hasPending: Bool { irr != [0, 0, 0, 0] }

    /// The CPU takes the vector: IRR to ISR.
    public func acknowledge(_ vector: UInt8) {
        let word = Int(vector >> 6)
        let bit = UInt64(1) << UInt64(vector & 63)
        irr[word] &= ~bit
        isr[word] |= bit
        delivered += 1
    }

    /// EOI: ends the highest in-service interrupt. An EOI with nothing in service does nothing.
    func endOfInterrupt() {
        guard let vector = Self.highest(isr) else { return }
        endOfInterrupts += 1
        let word = vector >> 6
        let bit = UInt64(1) << UInt64(vector & 63)
        isr[word] &= ~bit
        if tmr[word] & bit != 0 { levelTriggeredEOI?(UInt8(vector)) }
    }

    // MARK: Timer

    var timerMode: TimerMode { TimerMode(rawValue: (lvt[0] >> 17) & 3) ?? .oneShot }
    var timerDivisor: UInt64 {
        let code = (divideConfiguration & 3) | ((divideConfiguration >> 1) & 4)
        return code == 7 ? 1 : UInt64(2) << UInt64(code)
    }

    func armCountdown(now: UInt64) {
        timerStart = now
        timerDeadline = initialCount == 0 ? nil : now &+ UInt64(initialCount) &* timerDivisor
    }

    /// Fires the timer if its deadline has passed; the CPU calls this at instruction boundaries.
    public func poll(now: UInt64) {
        guard let deadline = timerDeadline, now >= deadline else { return }
        timerFirings += 1
        if lvt[0] & 0x1_0000 == 0 && softwareEnabled { accept(vector: UInt8(lvt[0] & 0xFF)) }
        switch timerMode {
        case .periodic:
            // The next period starts where this one ended, not when it was noticed.
            let period = UInt64(initialCount) &* timerDivisor
            timerStart = deadline
            timerDeadline = period == 0 ? nil : deadline &+ period * ((now &- deadline) / period + 1)
        case .oneShot:
            timerDeadline = nil
        case .tscDeadline:
            tscDeadline = 0
            timerDeadline = nil
        }
    }

    func currentCount(now: UInt64) -> UInt32 {
        guard timerMode != .tscDeadline, let deadline = timerDeadline, now < deadline else { return 0 }
        return UInt32(truncatingIfNeeded: (deadline - now) / timerDivisor)
    }

    // MARK: Registers

    /// Reads the 32-bit register at `offset` (xAPIC page offset). nil: no such register.
    public func read(offset: Int, now: UInt64) -> UInt32? {
        switch offset {
        case Register.id: return isX2APIC ? id : id << 24
        case Register.version: return 0x0005_0014  // version 0x14, 6 LVT entries
        case Register.taskPriority: return taskPriority
        case Register.arbitrationPriority: return 0
        case Register.processorPriority: return processorPriority
        case Register.eoi: return 0
        case Register.logicalDestination: return isX2APIC ? x2APICLogicalID : logicalDestination
        case Register.destinationFormat: return isX2APIC ? nil : destinationFormat
        case Register.spurious: return spurious
        case Register.isr..<Register.isr + 0x80: return word(isr, offset - Register.isr)
        case Register.tmr..<Register.tmr + 0x80: return word(tmr, offset - Register.tmr)
        case Register.irr..<Register.irr + 0x80: return word(irr, offset - Register.irr)
        case Register.errorStatus: return errorStatus
        case Register.icrLow: return UInt32(truncatingIfNeeded: icr)
        case Register.icrHigh: return isX2APIC ? nil : UInt32(truncatingIfNeeded: icr >> 32)
        case Register.lvtTimer...Register.lvtError: return lvt[(offset - Register.lvtTimer) >> 4]
        case Register.timerInitialCount: return initialCount
        case Register.timerCurrentCount: return currentCount(now: now)
        case Register.timerDivide: return divideConfiguration
        default: return nil
        }
    }

    private func word(_ set: [UInt64], _ relative: Int) -> UInt32? {
        guard relative & 0xF == 0 else { return nil }
        let index = relative >> 4  // 32-bit words 0...7
        return UInt32(truncatingIfNeeded: set[index >> 1] >> UInt64((index & 1) * 32))
    }

    /// Writes the 32-bit register at `offset`. Read-only and reserved registers ignore writes
    /// (the xAPIC) — a guest can never put the model in an inconsistent state.
    public func write(offset: Int, value: UInt32, now: UInt64) {
        switch offset {
        case Register.taskPriority: taskPriority = value & 0xFF
        case Register.eoi: endOfInterrupt()
        case Register.logicalDestination: if !isX2APIC { logicalDestination = value & 0xFF00_0000 }
        case Register.destinationFormat: if !isX2APIC { destinationFormat = value | 0x0FFF_FFFF }
        case Register.spurious:
            spurious = value & 0x13FF
            if !softwareEnabled { for index in lvt.indices { lvt[index] |= 0x1_0000 } }
        case Register.errorStatus: errorStatus = 0
        case Register.icrLow:
            icr = (icr & ~0xFFFF_FFFF) | UInt64(value & ~0x1000)  // delivery status always idle
            sendInterprocessorInterrupt()
        case Register.icrHigh: if !isX2APIC { icr = (icr & 0xFFFF_FFFF) | UInt64(value) << 32 }
        case Register.lvtTimer...Register.lvtError:
            let index = (offset - Register.lvtTimer) >> 4
            var masked = value
            if !softwareEnabled { masked |= 0x1_0000 }
            let wasMode = timerMode
            lvt[index] = masked & (index == 0 ? 0x7_10FF : 0x1_A7FF)
            if index == 0 && timerMode != wasMode {
                // Changing mode disarms the timer (SDM 11.5.4.1).
                timerDeadline = nil
                tscDeadline = 0
                initialCount = 0
            }
        case Register.timerInitialCount:
            guard timerMode != .tscDeadline else { return }
            initialCount = value
            armCountdown(now: now)
        case Register.timerDivide:
            divideConfiguration = value & 0xB
        case Register.selfIPI:
            if isX2APIC { accept(vector: UInt8(value & 0xFF)) }
        default: break
        }
    }

    func sendInterprocessorInterrupt() {
        let low = UInt32(truncatingIfNeeded: icr)
        let destination = isX2APIC ? UInt32(truncatingIfNeeded: icr >> 32) : UInt32(truncatingIfNeeded: icr >> 56)
        let deliveryMode = (low >> 8) & 7
        let shorthand = (low >> 18) & 3
        let toSelf = shorthand == 1 || (shorthand == 0 && destination == id)
        if toSelf && deliveryMode == 0 {
            accept(vector: UInt8(low & 0xFF))
        } else if shorthand == 2 && deliveryMode == 0 {
            accept(vector: UInt8(low & 0xFF))
            sendIPI?(destination, low)
        } else {
            sendIPI?(destination, low)
        }
    }

    // MARK: MSRs

    /// IA32_APIC_BASE (0x1B), IA32_TSC_DEADLINE (0x6E0) and the x2APIC range (0x800–0x8FF).
    public static func owns(msr: UInt32) -> Bool { msr == 0x1B || msr == 0x6E0 || (0x800...0x8FF).contains(msr) }

    /// nil: the access raises #GP (x2APIC MSRs while not in x2APIC mode, unknown registers).
    public func readMSR(_ msr: UInt32, now: UInt64) -> UInt64? {
        switch msr {
        case 0x1B: return baseMSR
        case 0x6E0: return timerMode == .tscDeadline ? tscDeadline : 0
        default:
            guard isX2APIC else { return nil }
            let offset = Int(msr - 0x800) << 4
            if offset == Register.icrLow { return icr }
            guard offset != Register.eoi, offset != Register.selfIPI else { return nil }
            return read(offset: offset, now: now).map(UInt64.init)
        }
    }

    /// false: the write raises #GP.
    public func writeMSR(_ msr: UInt32, _ value: UInt64, now: UInt64) -> Bool {
        switch msr {
        case 0x1B:
            // Base address, enable and x2APIC bits; x2APIC without enable is an invalid state.
            guard value & ~0xF_FFFF_FD00 == 0, value & 0xC00 != 0x400 else { return false }
            baseMSR = value | (baseMSR & (1 << 8))
            if !isEnabled {
                timerDeadline = nil
                irr = [0, 0, 0, 0]
            }
            return true
        case 0x6E0:
            guard timerMode == .tscDeadline else { return true }  // ignored outside deadline mode
            tscDeadline = value
            timerDeadline = value == 0 ? nil : value
            return true
        default:
            guard isX2APIC else { return false }
            let offset = Int(msr - 0x800) << 4
            if offset == Register.icrLow {
                icr = value & ~0x1000
                sendInterprocessorInterrupt()
                return true
            }
            guard read(offset: offset, now: now) != nil || offset == Register.eoi || offset == Register.selfIPI else {
                return false
            }
            write(offset: offset, value: UInt32(truncatingIfNeeded: value), now: now)
            return true
        }
    }
}
