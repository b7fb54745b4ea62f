import Glibc
import Synchronization

/// Why the interpreter stopped executing guest instructions.
public enum X86Stop: Equatable, Sendable {
    /// The current instruction needs a device the VMM owns (port I/O or MMIO); see `pendingAccess`.
    case deviceAccess
    /// `hlt` with nothing that could wake the CPU: interrupts disabled, or no timer armed.
    case halt
    /// Triple fault or an execution state the interpreter cannot continue from.
    case shutdown(String)
    /// `requestStop()` was called or the instruction budget ran out.
    case interrupted
}

/// Faults raised while executing one instruction. Typed throws keep them allocation-free.
public enum X86Fault: Error, Equatable {
    /// An architectural exception to deliver to the guest (vector, error code if any).
    case exception(vector: UInt8, errorCode: UInt32?)
    /// The instruction must stop for a device access; it is re-executed after the VMM answers.
    case deviceExit
    /// The machine cannot continue (triple fault, unsupported mode).
    case shutdown(String)
    /// Another vCPU changed a locked instruction's operand between its load and its store:
    /// nothing was written, and the instruction runs again from the start.
    case retry
}

/// Exception vectors the interpreter raises.
public enum X86Vector {
    public static let divide: UInt8 = 0
    public static let debug: UInt8 = 1
    public static let breakpoint: UInt8 = 3
    public static let invalidOpcode: UInt8 = 6
    public static let deviceNotAvailable: UInt8 = 7
    public static let doubleFault: UInt8 = 8
    public static let segmentNotPresent: UInt8 = 11
    public static let stackFault: UInt8 = 12
    public static let generalProtection: UInt8 = 13
    public static let pageFault: UInt8 = 14
    public static let floatingPointError: UInt8 = 16
    public static let simdFloatingPoint: UInt8 = 19
}

/// A software x86-64 CPU: one hardware thread, the integer instruction set (x87 and SSE run on the
/// host, FloatingPoint/), long mode with 4-level paging and the 32-bit protected-mode entry that
/// PVH and Multiboot kernels start in.
///
/// State is kept in unmanaged buffers (registers, decoded-instruction cache, TLB) so the
/// per-instruction path neither allocates nor pays for copy-on-write or bounds checks; every
/// guest-controlled index into them is masked or range-checked first.
public final class X86CPU {
    // MARK: Architectural state

    /// rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8...r15.
    public let registers: UnsafeMutablePointer<UInt64>
    public var rip: UInt64 = 0
    /// RFLAGS bits other than the six arithmetic ones (CF PF AF ZF SF OF), which are lazy.
    var otherFlags: UInt64 = 0x2
    /// Current privilege level (CS.RPL).
    public internal(set) var cpl: Int = 0
    /// True when CS is a 64-bit code segment in long mode.
    public internal(set) var is64BitCode = false
    /// Segment selectors and bases: ES CS SS DS FS GS.
    public internal(set) var selectors: [UInt16] = [0, 0, 0, 0, 0, 0]
    let segmentBases: UnsafeMutablePointer<UInt64>
    public internal(set) var cr0: UInt64 = 0x11
    public internal(set) var cr2: UInt64 = 0
    public internal(set) var cr3: UInt64 = 0
    public internal(set) var cr4: UInt64 = 0
    public internal(set) var efer: UInt64 = 0
    /// DR0-DR3 (breakpoint addresses), DR6 (status) and DR7 (control), as `mov` to and from
    /// them leaves them. They are stored, not acted on: the emulator raises no breakpoint
    /// exceptions from them (Linux writes them at boot and for ptrace/perf breakpoints).
    public internal(set) var debugRegisters = DebugRegisters()
    var gdtBase: UInt64 = 0
    var gdtLimit: UInt16 = 0
    var idtBase: UInt64 = 0
    var idtLimit: UInt16 = 0
    var taskSelector: UInt16 = 0
    var taskBase: UInt64 = 0
    var taskLimit: UInt32 = 0
    var msrSTAR: UInt64 = 0
    var msrLSTAR: UInt64 = 0
    var msrCSTAR: UInt64 = 0
    var msrFMASK: UInt64 = 0
    var msrKernelGSBase: UInt64 = 0
    var msrTSCAux: UInt64 = 0
    var msrPAT: UInt64 = 0x0007_0406_0007_0406
    var msrMiscEnable: UInt64 = 1
    var msrSysenter: [UInt64] = [0, 0, 0]
    /// x87, MMX and SSE registers and the host code that computes on them (made on first use).
    lazy var floatingPoint = HostFloatingPoint()

    // MARK: Lazy arithmetic flags

    /// How the six arithmetic flags derive from the last flag-setting operation.
    enum FlagSource: UInt8 {
        case explicit  // `flagValue` holds them
        case logic, add, adc, sub, sbb, inc, dec, neg, shl, shr, sar, mul
    }
    var flagSource: FlagSource = .explicit
    /// Operands and result of that operation, masked to its width.
    var flagA: UInt64 = 0
    var flagB: UInt64 = 0
    var flagResult: UInt64 = 0
    /// Width of the operation in bits (8, 16, 32, 64).
    var flagBits: UInt64 = 64
    /// Carry in (adc/sbb), preserved CF (inc/dec), or CF=OF (mul).
    var flagCarry = false
    /// The six arithmetic flags when `flagSource == .explicit`.
    var flagValue: UInt64 = 0

    // MARK: Machine

    /// Guest RAM: guest-physical 0 ..< ramSize; everything above is device space (MMIO).
    let ram: UnsafeMutableRawPointer
    let ramSize: UInt64
    /// Guest instructions retired since creation.
    public internal(set) var retired: UInt64 = 0
    /// Instructions the interpreter does not implement, as "rip: bytes" (first few), reported by the engine.
    public internal(set) var unimplemented: [String] = []
    let stopRequested = Atomic<Bool>(false)
    let traceEnabled = getenv("HVBENCH_X86_TRACE") != nil
    /// Set when `hlt` or a shutdown ends execution.
    var stopReason: X86Stop? { didSet { stopPending = stopReason != nil } }
    /// `stopReason != nil`, as a plain flag for the per-instruction check.
    var stopPending = false
    /// The local APIC; its page and MSRs are handled inside the CPU, never as VMM exits.
    public let apic: LocalAPIC
    /// Set while the APIC needs attention at instruction boundaries (see X86Interrupts.swift).
    var interruptWork = false
    /// `hlt` executed with IF set: no instructions run until an interrupt is taken.
    public internal(set) var halted = false
    var timerPollCountdown = 0
    /// `retired` at the boundary an STI shadow covers (no interrupt is taken there).
    var interruptShadowEnds: UInt64 = .max
    /// A locked read-modify-write in progress: the value its load saw, and the lazy flags from
    /// before it (restored if another vCPU changed the operand and the instruction runs again).
    var lockedOriginal: UInt64 = 0
    var lockedSavedFlags = SavedFlags()
    /// Exception being delivered, to detect double and triple faults.
    var deliveringVector: Int = -1

    // Decoded-instruction cache (direct-mapped on the linear RIP) and its invalidation state.
    static let decodeCacheEntries = 1 << 15
    /// All zeroes is an empty slot (generation 0 is never current).
    let decodeTable = ZeroedTable<Instruction>(count: X86CPU.decodeCacheEntries)
    /// `decodeTable`'s memory, stored: the interpreter reads it at every instruction.
    let decodeCache: UnsafeMutablePointer<Instruction>
    /// The generation cached code of the current privilege carries (decoded instructions,
    /// translated blocks): CPL3 code and the kernel's have one each, so a CR3 write can forget
    /// the user side alone when all the kernel code cached lies in global pages, which a CR3
    /// write does not flush from a real TLB either (a Linux boot wrote CR3 18,334 times, and
    /// each write made every translation stale). Both come from one counter: never equal.
    @inline(__always) var decodeGeneration: UInt32 { cpl == 3 ? userCodeGeneration : kernelCodeGeneration }
    var kernelCodeGeneration: UInt32 = 1
    var userCodeGeneration: UInt32 = 2
    var lastCodeGeneration: UInt32 = 2
    /// Code fetched at CPL0-2 since the last full invalidation came from a page that is not
    /// global (or CR4.PGE is clear): a CR3 write then forgets the kernel's cached code too.
    var kernelCodeOutsideGlobalPages = false
    /// Which RAM lines and pages hold instructions some vCPU has cached (shared by all vCPUs).
    let codeMap: CodeMap
    /// This vCPU's bit in `codeMap`.
    let codeBit: UInt8
    /// One byte per 64-byte line of guest RAM: bit i set when vCPU i cached an instruction from it.
    var codeLines: UnsafeMutablePointer<UInt8> { codeMap.lines }
    /// One byte per 4 KiB page of guest RAM: bit i set when any line of it holds vCPU i's code.
    var codePages: UnsafeMutablePointer<UInt8> { codeMap.pages }
    var markedCodeLines: [Int] = []
    var markedCodePages: [Int] = []
    /// Linear pages that hold cached code: an invlpg of one of them invalidates the cache.
    var codeLinearPages = Set<UInt64>()

    /// The binary translator's blocks, when this vCPU translates (nil: it only interprets).
    public var translation: TranslationCache?

    // Software TLB (direct-mapped, 4 KiB granularity).
    static let tlbEntries = 256
    let tlb: UnsafeMutablePointer<TLBEntry>

    // Device accesses of the current instruction, replayed when it is re-executed.
    let deviceLog = DeviceLog()
    /// Buffer offset of the device access answered last (string port I/O reads its data there).
    var lastReplayedOffset = 0
    /// Called for the CPUID model, rdtsc and MSRs that depend on the host.
    public var timestamp: () -> UInt64

    // MARK: Other vCPUs

    /// The vCPUs sharing this CPU's RAM, when there are several (nil: a uniprocessor).
    var processors: EmulatedProcessors?
    /// Requests from other threads (IPIs, INIT, SIPI, code and TLB invalidations, stop), as
    /// `Mail` bits: read at every instruction boundary, slept on by a halted vCPU.
    let mail: UnsafeMutablePointer<UInt32>
    /// Interrupt vectors other threads posted, merged into the APIC by this vCPU's thread.
    let postedVectors = Mutex(PostedInterrupts())
    /// An application processor after reset or INIT: it runs nothing until a SIPI arrives.
    public internal(set) var waitingForStartup = false
    /// The vector of the last SIPI that started this vCPU (tests and diagnostics).
    public internal(set) var startupVector: UInt8?
    /// CS is a 16-bit code segment (real mode, or a 16-bit protected-mode segment): operands and
    /// addresses default to 16 bits, and RIP holds CS.base + IP.
    public internal(set) var is16BitCode = false

    /// - Parameters:
    ///   - codeMap: the code map of the vCPUs this one shares RAM with; nil for a new machine.
    ///   - index: this vCPU's index on the machine (0 ..< `CodeMap.maximumProcessors`).
    ///   - apicID: its local APIC's ID; the bootstrap processor is index 0.
    public init(
        ram: UnsafeMutableRawPointer, ramSize: UInt64, timestamp: @escaping () -> UInt64, codeMap: CodeMap? = nil,
        index: Int = 0
    ) {
        self.ram = ram
        self.ramSize = ramSize
        self.timestamp = timestamp
        decodeCache = decodeTable.pointer
        self.codeMap = codeMap ?? CodeMap(ramSize: ramSize)
        codeBit = UInt8(1) << UInt8(index & (CodeMap.maximumProcessors - 1))
        apic = LocalAPIC(id: UInt32(index), bootstrap: index == 0)
        mail = .allocate(capacity: 1)
        mail.initialize(to: 0)
        registers = .allocate(capacity: 16)
        registers.initialize(repeating: 0, count: 16)
        segmentBases = .allocate(capacity: 6)
        segmentBases.initialize(repeating: 0, count: 6)
        tlb = .allocate(capacity: Self.tlbEntries)
        tlb.initialize(repeating: TLBEntry(), count: Self.tlbEntries)
    }

    deinit {
        registers.deallocate()
        segmentBases.deallocate()
        mail.deallocate()
        tlb.deallocate()
    }

    /// Asks a `run` in progress on another thread to return `.interrupted` soon. Thread-safe.
    public func requestStop() {
        stopRequested.store(true, ordering: .relaxed)
        if processors != nil { post(Mail.stop) }  // a halted vCPU sleeps on its mail
    }

    // MARK: Registers

    @inline(__always)
    func readRegister(_ index: UInt8, size: UInt8) -> UInt64 {
        switch size {
        case 8: return registers[Int(index & 15)]
        case 4: return registers[Int(index & 15)] & 0xFFFF_FFFF
        case 2: return registers[Int(index & 15)] & 0xFFFF
        default:
            // Byte registers 16...19 are AH, CH, DH, BH (no REX prefix).
            if index >= 16 { return (registers[Int(index & 3)] >> 8) & 0xFF }
            return registers[Int(index & 15)] & 0xFF
        }
    }

    @inline(__always)
    func writeRegister(_ index: UInt8, size: UInt8, _ value: UInt64) {
        switch size {
        case 8: registers[Int(index & 15)] = value
        case 4: registers[Int(index & 15)] = value & 0xFFFF_FFFF  // 32-bit writes zero-extend
        case 2:
            let slot = registers + Int(index & 15)
            slot.pointee = (slot.pointee & ~0xFFFF) | (value & 0xFFFF)
        default:
            if index >= 16 {
                let slot = registers + Int(index & 3)
                slot.pointee = (slot.pointee & ~0xFF00) | ((value & 0xFF) << 8)
            } else {
                let slot = registers + Int(index & 15)
                slot.pointee = (slot.pointee & ~0xFF) | (value & 0xFF)
            }
        }
    }

    // MARK: Flags

    static let carryFlag: UInt64 = 1 << 0
    static let parityFlag: UInt64 = 1 << 2
    static let adjustFlag: UInt64 = 1 << 4
    static let zeroFlag: UInt64 = 1 << 6
    static let signFlag: UInt64 = 1 << 7
    static let trapFlag: UInt64 = 1 << 8
    static let interruptFlag: UInt64 = 1 << 9
    static let directionFlag: UInt64 = 1 << 10
    static let overflowFlag: UInt64 = 1 << 11
    static let arithmeticFlags: UInt64 = 0x8D5

    @inline(__always) static func mask(bits: UInt64) -> UInt64 { bits == 64 ? ~0 : (1 << bits) &- 1 }
    @inline(__always) static func mask(size: UInt8) -> UInt64 { size == 8 ? ~0 : (1 << (UInt64(size) << 3)) &- 1 }
    @inline(__always) static func signBit(size: UInt8) -> UInt64 { 1 << ((UInt64(size) << 3) &- 1) }
    @inline(__always) static func signExtend(_ value: UInt64, size: UInt8) -> UInt64 {
        switch size {
        case 1: return UInt64(bitPattern: Int64(Int8(truncatingIfNeeded: value)))
        case 2: return UInt64(bitPattern: Int64(Int16(truncatingIfNeeded: value)))
        case 4: return UInt64(bitPattern: Int64(Int32(truncatingIfNeeded: value)))
        default: return value
        }
    }

    @inline(__always)
    func setFlags(_ source: FlagSource, _ a: UInt64, _ b: UInt64, _ result: UInt64, size: UInt8) {
        flagSource = source
        flagA = a
        flagB = b
        flagResult = result
        flagBits = UInt64(size) << 3
    }

    @inline(__always) var signMask: UInt64 { 1 << (flagBits &- 1) }

    var carry: Bool {
        switch flagSource {
        case .explicit: return flagValue & Self.carryFlag != 0
        case .logic: return false
        case .add: return flagResult < flagA
        case .adc: return flagCarry ? flagResult <= flagA : flagResult < flagA
        case .sub: return flagA < flagB
        case .sbb: return flagCarry ? flagA <= flagB : flagA < flagB
        case .inc, .dec, .mul: return flagCarry
        case .neg: return flagA != 0
        case .shl: return flagB <= flagBits && (flagA >> (flagBits &- flagB)) & 1 != 0
        case .shr: return (flagA >> (flagB &- 1)) & 1 != 0
        case .sar: return (Self.signExtendBits(flagA, flagBits) >> min(flagB &- 1, 63)) & 1 != 0
        }
    }

    @inline(__always) static func signExtendBits(_ value: UInt64, _ bits: UInt64) -> UInt64 {
        bits == 64 ? value : UInt64(bitPattern: (Int64(bitPattern: value << (64 &- bits))) >> (64 &- bits))
    }

    @inline(__always) var zero: Bool {
        flagSource == .explicit ? flagValue & Self.zeroFlag != 0 : flagResult == 0
    }

    @inline(__always) var sign: Bool {
        flagSource == .explicit ? flagValue & Self.signFlag != 0 : flagResult & signMask != 0
    }

    var overflow: Bool {
        let sign = signMask
        switch flagSource {
        case .explicit: return flagValue & Self.overflowFlag != 0
        case .logic, .sar: return false
        case .add, .adc: return (flagA ^ flagResult) & (flagB ^ flagResult) & sign != 0
        case .sub, .sbb: return (flagA ^ flagB) & (flagA ^ flagResult) & sign != 0
        case .inc: return flagResult == sign
        case .dec: return flagResult == sign &- 1
        case .neg: return flagResult == sign
        case .mul: return flagCarry
        case .shl: return ((flagResult & sign != 0) != carry)
        case .shr: return flagA & sign != 0
        }
    }

    var parity: Bool {
        if flagSource == .explicit { return flagValue & Self.parityFlag != 0 }
        return (flagResult & 0xFF).nonzeroBitCount & 1 == 0
    }

    var adjust: Bool {
        switch flagSource {
        case .explicit: return flagValue & Self.adjustFlag != 0
        case .add, .adc, .sub, .sbb: return (flagA ^ flagB ^ flagResult) & 0x10 != 0
        case .inc, .dec: return (flagA ^ 1 ^ flagResult) & 0x10 != 0
        case .neg: return (flagA ^ flagResult) & 0x10 != 0
        case .logic, .shl, .shr, .sar, .mul: return false
        }
    }

    /// The six arithmetic flags as RFLAGS bits.
    var arithmeticFlagBits: UInt64 {
        if flagSource == .explicit { return flagValue }
        var value: UInt64 = 0
        if carry { value |= Self.carryFlag }
        if parity { value |= Self.parityFlag }
        if adjust { value |= Self.adjustFlag }
        if zero { value |= Self.zeroFlag }
        if sign { value |= Self.signFlag }
        if overflow { value |= Self.overflowFlag }
        return value
    }

    /// Full RFLAGS.
    public var rflags: UInt64 {
        get { otherFlags | arithmeticFlagBits }
        set {
            otherFlags = (newValue & ~Self.arithmeticFlags) | 0x2
            flagSource = .explicit
            flagValue = newValue & Self.arithmeticFlags
        }
    }

    /// Replaces some arithmetic flags, keeping the rest.
    @inline(__always)
    func setArithmeticFlags(_ value: UInt64, mask: UInt64) {
        let current = arithmeticFlagBits
        flagSource = .explicit
        flagValue = (current & ~mask) | (value & mask)
    }

    /// Evaluates condition code `code` (the low nibble of Jcc/SETcc/CMOVcc).
    @inline(__always)
    func condition(_ code: UInt8) -> Bool {
        if flagSource == .sub {
            // cmp/sub is the common producer: decide from the operands directly.
            let bits = flagBits
            switch code {
            case 2: return flagA < flagB
            case 3: return flagA >= flagB
            case 4: return flagResult == 0
            case 5: return flagResult != 0
            case 6: return flagA <= flagB
            case 7: return flagA > flagB
            case 0xC:
                return Int64(bitPattern: Self.signExtendBits(flagA, bits)) < Int64(bitPattern: Self.signExtendBits(flagB, bits))
            case 0xD:
                return Int64(bitPattern: Self.signExtendBits(flagA, bits)) >= Int64(bitPattern: Self.signExtendBits(flagB, bits))
            case 0xE:
                return Int64(bitPattern: Self.signExtendBits(flagA, bits)) <= Int64(bitPattern: Self.signExtendBits(flagB, bits))
            case 0xF:
                return Int64(bitPattern: Self.signExtendBits(flagA, bits)) > Int64(bitPattern: Self.signExtendBits(flagB, bits))
            default: break
            }
        }
        let result: Bool
        switch code >> 1 {
        case 0: result = overflow
        case 1: result = carry
        case 2: result = zero
        case 3: result = carry || zero
        case 4: result = sign
        case 5: result = parity
        case 6: result = sign != overflow
        default: result = zero || (sign != overflow)
        }
        return code & 1 == 0 ? result : !result
    }

    // MARK: Reset

    /// 32-bit protected mode, flat segments, paging off: the PVH, Multiboot and Linux 32-bit
    /// boot protocol entry state.
    public func enterProtectedMode(
        entryPoint: UInt32, eax: UInt32, ebx: UInt32, esi: UInt32 = 0, gdtBase: UInt32, gdtLimit: UInt16, codeSelector: UInt16,
        dataSelector: UInt16, taskSelector: UInt16
    ) {
        registers.update(repeating: 0, count: 16)
        registers[0] = UInt64(eax)
        registers[3] = UInt64(ebx)
        registers[6] = UInt64(esi)
        debugRegisters = DebugRegisters()
        rip = UInt64(entryPoint)
        rflags = 0x2
        cpl = 0
        is64BitCode = false
        selectors = [dataSelector, codeSelector, dataSelector, dataSelector, dataSelector, dataSelector]
        segmentBases.update(repeating: 0, count: 6)
        cr0 = 0x11
        cr3 = 0
        cr4 = 0
        efer = 0
        self.gdtBase = UInt64(gdtBase)
        self.gdtLimit = gdtLimit
        idtBase = 0
        idtLimit = 0
        self.taskSelector = taskSelector
        taskBase = 0
        taskLimit = 0x67
        flushTLB()
        invalidateDecodedCode()
    }

    /// 64-bit mode at `cpl`, with paging already set up by the caller (tests, differential cases).
    public func enterLongMode(
        rip: UInt64, cr3: UInt64, cpl: Int, codeSelector: UInt16, stackSelector: UInt16, gdtBase: UInt64 = 0,
        gdtLimit: UInt16 = 0
    ) {
        self.rip = rip
        self.cr3 = cr3
        cr0 = 0x8001_0033
        cr4 = 0x20
        efer = 0x501
        self.cpl = cpl
        is64BitCode = true
        selectors = [stackSelector, codeSelector, stackSelector, stackSelector, 0, 0]
        self.gdtBase = gdtBase
        self.gdtLimit = gdtLimit
        flushTLB()
        invalidateDecodedCode()
    }

    var longModeActive: Bool { efer & 0x400 != 0 }
    var pagingEnabled: Bool { cr0 & 0x8000_0000 != 0 }
}
