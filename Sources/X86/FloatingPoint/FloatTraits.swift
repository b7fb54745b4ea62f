/// What the decoder learns about an x87, MMX or SSE instruction: the checks the executor makes
/// before running the same instruction on the host (HostFloatingPoint.swift) and the fix-ups
/// after. Stored in the decoded instruction's `sub` (low byte) and `size2` (high byte).
struct FloatTraits: OptionSet {
    let rawValue: UInt16

    static let readsMemory = FloatTraits(rawValue: 1 << 0)
    static let writesMemory = FloatTraits(rawValue: 1 << 1)
    /// A legacy-SSE 128-bit memory operand that must be 16-byte aligned (#GP otherwise).
    static let aligned = FloatTraits(rawValue: 1 << 2)
    /// An SSE instruction: #UD without CR4.OSFXSR or with CR0.EM, #NM with CR0.TS, MXCSR exceptions.
    static let sse = FloatTraits(rawValue: 1 << 3)
    /// An x87 instruction: #NM with CR0.EM or CR0.TS.
    static let x87 = FloatTraits(rawValue: 1 << 4)
    /// An MMX instruction: #UD with CR0.EM, #NM with CR0.TS.
    static let mmx = FloatTraits(rawValue: 1 << 5)
    /// Raises a pending unmasked x87 exception (#MF) first: every x87 instruction but the
    /// FN* control ones, and every MMX one.
    static let waits = FloatTraits(rawValue: 1 << 6)
    static let immediate = FloatTraits(rawValue: 1 << 7)
    /// ModRM.reg names a general register (e.g. `pmovmskb eax, xmm1`).
    static let regIsGeneral = FloatTraits(rawValue: 1 << 8)
    /// ModRM.rm names a general register in its register form (e.g. `movd xmm0, edi`).
    static let rmIsGeneral = FloatTraits(rawValue: 1 << 9)
    /// Loads the x87 control word (fldcw, fldenv, frstor, fninit, fnsave, fnstenv's masking).
    static let loadsControl = FloatTraits(rawValue: 1 << 10)
    /// Loads the x87 status word (fldenv, frstor, fninit, fnclex, fnsave).
    static let loadsStatus = FloatTraits(rawValue: 1 << 11)
    /// An x87 data operation: records the last instruction and operand pointers (FIP/FDP/FOP).
    static let x87Data = FloatTraits(rawValue: 1 << 12)
    /// Stores the control word (fnstcw): the guest's, not the masked one the host ran with.
    static let storesControl = FloatTraits(rawValue: 1 << 13)
    /// Stores the status word (fnstsw to memory or AX).
    static let storesStatus = FloatTraits(rawValue: 1 << 14)
    /// Stores the x87 environment (fnstenv, fnsave): its control, status and pointer fields.
    static let storesEnvironment = FloatTraits(rawValue: 1 << 15)

    static let sseRead: FloatTraits = [.sse, .readsMemory]
    static let sseAligned: FloatTraits = [.sse, .readsMemory, .aligned]
    static let mmxRead: FloatTraits = [.mmx, .waits, .readsMemory]
    static let x87Read: FloatTraits = [.x87, .waits, .x87Data, .readsMemory]
    static let x87Write: FloatTraits = [.x87, .waits, .x87Data, .writesMemory]
    static let x87Register: FloatTraits = [.x87, .waits, .x87Data]
}

/// One decoded x87/MMX/SSE instruction's traits and memory operand size (0: none).
struct FloatForm {
    var traits: FloatTraits
    var memoryBytes: UInt8

    init(_ traits: FloatTraits, _ memoryBytes: UInt8 = 0) {
        self.traits = traits
        self.memoryBytes = memoryBytes
    }
}

/// The instruction re-encoded for the host, packed in the decoded instruction's `immediate`:
/// mandatory prefix, REX bits (W, R, B), escape byte (0x0F or D8...DF), opcode, ModRM, imm8 and
/// whether the r/m operand is memory. `HostFloatingPoint` builds one host snippet per distinct value.
struct HostEncoding: Hashable {
    var prefix: UInt8 = 0
    var rex: UInt8 = 0
    var escape: UInt8 = 0x0F
    var opcode: UInt8 = 0
    var modrm: UInt8 = 0
    var immediate: UInt8 = 0
    var memory = false

    var packed: UInt64 {
        UInt64(prefix) | UInt64(rex) << 8 | UInt64(escape) << 16 | UInt64(opcode) << 24 | UInt64(modrm) << 32
            | UInt64(immediate) << 40 | (memory ? 1 << 48 : 0)
    }

    init() {}

    init(packed value: UInt64) {
        prefix = UInt8(truncatingIfNeeded: value)
        rex = UInt8(truncatingIfNeeded: value >> 8)
        escape = UInt8(truncatingIfNeeded: value >> 16)
        opcode = UInt8(truncatingIfNeeded: value >> 24)
        modrm = UInt8(truncatingIfNeeded: value >> 32)
        immediate = UInt8(truncatingIfNeeded: value >> 40)
        memory = value >> 48 & 1 != 0
    }
}
