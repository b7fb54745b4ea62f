import Glibc
import CGuestAtomics
import Synchronization

/// Which lines and pages of guest RAM hold instructions a vCPU has decoded: one bit per vCPU,
/// shared by every vCPU of a machine, so a store by any of them finds the caches it makes stale.
public final class CodeMap: @unchecked Sendable {
    /// One bit per vCPU in a byte (and hvbench's own limit on guest CPUs).
    public static let maximumProcessors = 8
    private let lineTable: ZeroedTable<UInt8>
    private let pageTable: ZeroedTable<UInt8>
    /// The tables' memory, stored: every store the emulator makes reads them.
    let lines: UnsafeMutablePointer<UInt8>
    let pages: UnsafeMutablePointer<UInt8>

    /// Zeroed tables, so creating them costs the same at any RAM size (a byte per 64 guest
    /// bytes is 48 MiB at 3 GiB: zeroing it up front made the emulator's `vm.boot` grow from
    /// 1.8 ms at 64 MiB to 36.6 ms).
    init(ramSize: UInt64) {
        lineTable = ZeroedTable(count: Int((ramSize + 63) >> 6))
        pageTable = ZeroedTable(count: Int((ramSize + 4095) >> 12))
        (lines, pages) = (lineTable.pointer, pageTable.pointer)
    }
}

/// Bits of a vCPU's mail word: what other threads asked of it since it last looked.
enum Mail {
    /// Vectors were posted (`X86CPU.postedVectors`).
    static let interrupt: UInt32 = 1 << 0
    /// INIT: back to the wait-for-SIPI state.
    static let initialize: UInt32 = 1 << 1
    /// SIPI, with its vector in `postedVectors`.
    static let startup: UInt32 = 1 << 2
    /// Another vCPU wrote RAM this one has decoded instructions from.
    static let codeWritten: UInt32 = 1 << 3
    /// Another vCPU started caching code from a page: fast-path writes to it must stop.
    static let flushTLB: UInt32 = 1 << 4
    /// `requestStop()`: only wakes the vCPU; `stopRequested` says why.
    static let stop: UInt32 = 1 << 5
    /// Set by the vCPU while it sleeps on the word, so posters know to wake it.
    static let sleeping: UInt32 = 1 << 31
}

/// What other threads posted to a vCPU: interrupt vectors (edge and level) and a SIPI vector.
struct PostedInterrupts {
    var vectors: [UInt64] = [0, 0, 0, 0]
    var levelTriggered: [UInt64] = [0, 0, 0, 0]
    var startupVector: UInt8?
}

/// The vCPUs of one emulated machine, each on its own host thread over the same guest RAM: the
/// interrupt-command path between their local APICs (fixed IPIs, INIT, SIPI) and the notices
/// that keep their decoded-instruction caches and TLBs coherent.
public final class EmulatedProcessors: @unchecked Sendable {
    private struct Member { unowned let cpu: X86CPU }
    private let members: [Member]
    /// IPIs that reached no vCPU (no such APIC ID, NMI/SMI/ExtINT, logical destinations), and
    /// INITs and SIPIs a vCPU ignored (the bootstrap processor's, SIPIs to a running vCPU).
    public let undeliverable = Atomic<Int>(0)
    /// Locked instructions whose operand straddles an 8-byte boundary: serialised here.
    let splitLock = Mutex<Void>(())

    /// Joins `cpus` (index = APIC ID, the bootstrap processor first) into one machine.
    public init(_ cpus: [X86CPU]) {
        members = cpus.map(Member.init)
        for cpu in cpus {
            cpu.processors = self
            cpu.apic.sendIPI = { [unowned self, unowned cpu] destination, low in
                self.route(from: cpu, destination: destination, low: low)
            }
        }
    }

    public var count: Int { members.count }

    /// Carries out an interrupt command the APIC of `sender` could not complete on its own.
    func route(from sender: X86CPU, destination: UInt32, low: UInt32) {
        let vector = UInt8(truncatingIfNeeded: low)
        let deliveryMode = (low >> 8) & 7
        let logical = low & (1 << 11) != 0
        let levelAssert = low & (1 << 14) != 0
        let shorthand = (low >> 18) & 3
        let broadcast: UInt32 = sender.apic.isX2APIC ? 0xFFFF_FFFF : 0xFF
        // INIT level de-assert (level trigger, assert clear) only synchronises arbitration IDs.
        if deliveryMode == 5 && !levelAssert && low & (1 << 15) != 0 { return }
        let isTarget: (X86CPU) -> Bool
        switch shorthand {
        case 0:
            guard !logical else {
                _ = undeliverable.add(1, ordering: .relaxed)
                return
            }
            isTarget = { destination == broadcast || $0.apic.id == destination }
        case 1: isTarget = { $0 === sender }
        case 2: isTarget = { deliveryMode != 0 || $0 !== sender }  // the APIC took its own fixed one
        default: isTarget = { $0 !== sender }
        }
        // An IPI is on the path cpu.ipi measures: the members are walked, no target list is built.
        var reached = 0
        for member in members where isTarget(member.cpu) {
            let target = member.cpu
            reached += 1
            switch deliveryMode {
            case 0:
                target.postInterrupt(vector: vector, levelTriggered: false)
            case 1:  // lowest priority: the first candidate
                if reached == 1 { target.postInterrupt(vector: vector, levelTriggered: false) }
            case 5:
                if target.apic.id == 0 || target === sender {
                    _ = undeliverable.add(1, ordering: .relaxed)
                } else {
                    target.post(Mail.initialize)
                }
            case 6:
                guard target !== sender else { continue }
                target.postedVectors.withLock { $0.startupVector = vector }
                target.post(Mail.startup)
            default:
                _ = undeliverable.add(1, ordering: .relaxed)
            }
        }
        if reached == 0 { _ = undeliverable.add(1, ordering: .relaxed) }
    }

    /// A store hit code that the vCPUs in `holders` (bits) have decoded.
    func codeWritten(holders: UInt8) {
        for (index, member) in members.enumerated() where holders & (1 << UInt8(index)) != 0 {
            member.cpu.post(Mail.codeWritten)
        }
    }

    /// `marker` cached the first code of a page: the others may hold fast-path write entries for it.
    func codePageMarked(by marker: X86CPU) {
        for member in members where member.cpu !== marker { member.cpu.post(Mail.flushTLB) }
    }
}

extension X86CPU {
    /// Sets `bits` in this vCPU's mail and wakes it if it sleeps. Any thread.
    func post(_ bits: UInt32) {
        if cga_fetch_or_32(mail, bits) & Mail.sleeping != 0 { cga_futex_wake(mail) }
    }

    /// Makes `vector` pending at this vCPU's local APIC from any thread (IPIs, device interrupts
    /// on a machine with several vCPUs); taken at its next instruction boundary.
    func postInterrupt(vector: UInt8, levelTriggered: Bool) {
        let word = Int(vector >> 6)
        let bit = UInt64(1) << UInt64(vector & 63)
        postedVectors.withLock {
            $0.vectors[word] |= bit
            if levelTriggered { $0.levelTriggered[word] |= bit } else { $0.levelTriggered[word] &= ~bit }
        }
        post(Mail.interrupt)
    }

    /// Whether other threads left anything for this vCPU.
    @inline(__always) var hasMail: Bool { cga_load_relaxed_32(mail) & ~Mail.sleeping != 0 }

    /// Acts on the mail, on this vCPU's thread at an instruction boundary.
    @inline(never)
    func readMail() {
        let bits = cga_exchange_32(mail, 0)
        if bits & Mail.interrupt != 0 {
            let posted = postedVectors.withLock { posted in
                defer {
                    posted.vectors = [0, 0, 0, 0]
                    posted.levelTriggered = [0, 0, 0, 0]
                }
                return posted
            }
            for word in 0..<4 {
                var pending = posted.vectors[word]
                while pending != 0 {
                    let bit = pending.trailingZeroBitCount
                    pending &= pending - 1
                    apic.accept(
                        vector: UInt8(word * 64 + bit), levelTriggered: posted.levelTriggered[word] & (1 << UInt64(bit)) != 0)
                }
            }
        }
        if bits & Mail.codeWritten != 0 { invalidateDecodedCode() }
        if bits & Mail.flushTLB != 0 { flushTLB() }
        if bits & Mail.initialize != 0 { waitForStartup() }
        if bits & Mail.startup != 0 {
            let vector = postedVectors.withLock { posted in
                defer { posted.startupVector = nil }
                return posted.startupVector
            }
            if let vector {
                if waitingForStartup {
                    startUp(vector: vector)
                } else {
                    _ = processors?.undeliverable.add(1, ordering: .relaxed)  // a SIPI to a running vCPU
                }
            }
        }
        refreshInterruptWork()
    }

    /// Sleeps until mail arrives or `nanoseconds` pass (a halted or waiting vCPU).
    func sleepForMail(nanoseconds: Int64) {
        let seen = cga_fetch_or_32(mail, Mail.sleeping) | Mail.sleeping
        if seen == Mail.sleeping { _ = cga_futex_wait(mail, seen, nanoseconds) }
        _ = cga_fetch_and_32(mail, ~Mail.sleeping)
    }

    /// INIT (and an application processor's power-on state): registers reset, local APIC reset,
    /// nothing runs until a SIPI.
    func waitForStartup() {
        waitingForStartup = true
        halted = false
        debugRegisters = DebugRegisters()
        apic.reset()
        rflags = 0x2
        flushTLB()
        invalidateDecodedCode()
        refreshInterruptWork()  // so `run` waits at the first boundary instead of executing
    }

    /// SIPI: real mode at vector:0000, i.e. CS = vector << 8 with base vector << 12, IP = 0.
    func startUp(vector: UInt8) {
        waitingForStartup = false
        halted = false
        startupVector = vector
        registers.update(repeating: 0, count: 16)
        let base = UInt64(vector) << 12
        rip = base
        rflags = 0x2
        cpl = 0
        is64BitCode = false
        is16BitCode = true
        selectors = [0, UInt16(vector) << 8, 0, 0, 0, 0]
        segmentBases.update(repeating: 0, count: 6)
        segmentBases[1] = base
        cr0 = 0x10
        cr2 = 0
        cr3 = 0
        cr4 = 0
        efer = 0
        gdtBase = 0
        gdtLimit = 0xFFFF
        idtBase = 0
        idtLimit = 0x3FF
        taskSelector = 0
        taskBase = 0
        taskLimit = 0xFFFF
        flushTLB()
        invalidateDecodedCode()
    }
}
