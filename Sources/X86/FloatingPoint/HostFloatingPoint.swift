import Glibc

/// The guest's x87/MMX/SSE state and the host code that computes on it.
///
/// The emulator runs on an x86-64 host, so an x87 or SSE instruction is executed by the same
/// instruction on the host, on the guest's values: results, flags, MXCSR and status bits are the
/// hardware's, bit for bit, with no software floating point. Each distinct instruction form gets a
/// snippet, built once and kept in W^X executable memory:
///
///     save callee-saved registers, the host's MXCSR and x87 control word
///     fxrstor the guest's state (exceptions masked), load the guest's general registers and flags
///     the guest's instruction, its memory operand rewritten to [rdi + scratch]
///     store general registers and flags, fxsave the state
///     fninit, restore the host's control words and registers, return
///
/// rdi (the work block) is the one register the guest's instruction may not name; an explicit
/// rdi or rsp operand is renamed to r11 and loaded from and stored to the guest's slot.
/// Exceptions are always masked on the host; `X86CPU.executeHostFloat` decides afterwards what an
/// unmasked exception would have done (#XM now, or x87's pending #MF).
final class HostFloatingPoint {
    // Work-block layout (offsets in bytes).
    static let generalOffset = 0
    static let flagsOffset = 128
    static let hostMXCSROffset = 136
    static let hostControlOffset = 140
    static let scratchOffset = 192
    static let scratchBytes = 128
    static let stateOffset = 320
    static let workBytes = 832

    // FXSAVE image offsets.
    static let controlWord = 0
    static let statusWord = 2
    static let abridgedTags = 4
    static let lastOpcode = 6
    static let instructionPointer = 8
    static let dataPointer = 16
    static let mxcsr = 24
    static let mxcsrMask = 28
    static let registersOffset = 32
    static let xmmOffset = 160
    static let imageBytes = 512

    /// MXCSR bits a guest may set (DAZ included); anything else is #GP.
    static let mxcsrWritable: UInt32 = 0xFFFF

    /// The guest's architectural state in FXSAVE layout (as committed after each instruction).
    let image: UnsafeMutableRawPointer
    /// Registers, flags, memory scratch and the state copy the snippet works on.
    let work: UnsafeMutableRawPointer
    /// FIP, FDP and FOP of the last x87 data instruction, as the guest sees them.
    var lastInstruction: UInt64 = 0
    var lastData: UInt64 = 0
    var lastOpcode: UInt16 = 0

    private var code: ExecutableMemory?
    private var snippets: [UInt64: UnsafeRawPointer] = [:]
    typealias Snippet = @convention(c) (UnsafeMutableRawPointer) -> Void

    init() {
        image = UnsafeMutableRawPointer.allocate(byteCount: Self.imageBytes, alignment: 64)
        work = UnsafeMutableRawPointer.allocate(byteCount: Self.workBytes, alignment: 64)
        work.initializeMemory(as: UInt8.self, repeating: 0, count: Self.workBytes)
        reset()
    }

    deinit {
        image.deallocate()
        work.deallocate()
    }

    /// The state after reset as KVM presents it: FCW 0x37F, empty stack, MXCSR 0x1F80.
    func reset() {
        image.initializeMemory(as: UInt8.self, repeating: 0, count: Self.imageBytes)
        image.storeBytes(of: 0x37F, toByteOffset: Self.controlWord, as: UInt16.self)
        image.storeBytes(of: 0x1F80, toByteOffset: Self.mxcsr, as: UInt32.self)
        image.storeBytes(of: Self.mxcsrWritable, toByteOffset: Self.mxcsrMask, as: UInt32.self)
        lastInstruction = 0
        lastData = 0
        lastOpcode = 0
    }

    var control: UInt16 {
        get { image.load(fromByteOffset: Self.controlWord, as: UInt16.self) }
        set { image.storeBytes(of: newValue, toByteOffset: Self.controlWord, as: UInt16.self) }
    }
    var status: UInt16 {
        get { image.load(fromByteOffset: Self.statusWord, as: UInt16.self) }
        set { image.storeBytes(of: newValue, toByteOffset: Self.statusWord, as: UInt16.self) }
    }
    var mxcsr: UInt32 {
        get { image.load(fromByteOffset: Self.mxcsr, as: UInt32.self) }
        set { image.storeBytes(of: newValue, toByteOffset: Self.mxcsr, as: UInt32.self) }
    }
    var scratch: UnsafeMutableRawPointer { work + Self.scratchOffset }
    var workState: UnsafeMutableRawPointer { work + Self.stateOffset }
    var workFlags: UInt64 {
        get { work.load(fromByteOffset: Self.flagsOffset, as: UInt64.self) }
        set { work.storeBytes(of: newValue, toByteOffset: Self.flagsOffset, as: UInt64.self) }
    }

    /// Whether an unmasked x87 exception is pending (FSW.ES): the next waiting instruction takes #MF.
    var x87ExceptionPending: Bool { status & 0x80 != 0 }

    /// The status word with ES and B recomputed from the exception flags and masks.
    static func summarised(status: UInt16, control: UInt16) -> UInt16 {
        let unmasked = status & ~control & 0x3F != 0
        return (status & ~0x8080) | (unmasked ? 0x8080 : 0)
    }

    /// Copies the committed state into the work block with every exception masked and the
    /// exception flags cleared (so the host's flags afterwards are exactly what this instruction raised).
    func prepare(registers: UnsafeMutablePointer<UInt64>, arithmeticFlags: UInt64) {
        work.copyMemory(from: UnsafeRawPointer(registers), byteCount: 128)
        // Status flags only: DF, TF and AC stay clear on the host; IF is the host's own.
        workFlags = (arithmeticFlags & X86CPU.arithmeticFlags) | 0x202
        workState.copyMemory(from: image, byteCount: Self.imageBytes)
        workState.storeBytes(of: control | 0x3F, toByteOffset: Self.controlWord, as: UInt16.self)
        workState.storeBytes(of: status & ~0x80FF, toByteOffset: Self.statusWord, as: UInt16.self)
        workState.storeBytes(of: (mxcsr | 0x1F80) & ~0x3F, toByteOffset: Self.mxcsr, as: UInt32.self)
    }

    /// Runs the snippet for `encoding` on the work block; false when the host gives no executable memory.
    func run(_ encoding: UInt64, traits: FloatTraits) -> Bool {
        guard let snippet = snippet(for: encoding, traits: traits) else { return false }
        unsafeBitCast(snippet, to: Snippet.self)(work)
        return true
    }

    private func snippet(for encoding: UInt64, traits: FloatTraits) -> UnsafeRawPointer? {
        if let known = snippets[encoding] { return known }
        if code == nil { code = ExecutableMemory(capacity: 256 * 1024) }
        guard let code else { return nil }
        let bytes = HostSnippetAssembler.snippet(HostEncoding(packed: encoding), traits: traits)
        var placed = code.place(bytes)
        if placed == nil {
            code.reset()
            snippets.removeAll(keepingCapacity: true)
            placed = code.place(bytes)
        }
        guard let placed else { return nil }
        snippets[encoding] = placed
        return placed
    }
}
