/// Host x86-64 machine code for translated blocks: the few instruction forms the translator
/// emits, encoded by hand (Intel SDM vol. 2, chapter 2). Guest registers live in memory at
/// [rdi + 8 * n]. Host registers: rax and rdx (operands), r9 (wide constants, TLB entry),
/// r11 (a guest address), rcx and r13 (flag-free comparisons with jrcxz), and from the frame
/// rbx (the instruction budget), r8 (the software TLB) and r10 (guest RAM); rbp, r12, r14 and
/// r15 hold up to four guest registers for the whole block, and r13 and r11 two more in a block
/// that never touches guest memory. rbx, rbp and r12...r15 are saved and
/// restored as System V requires. Between guest instructions only flag-free host instructions
/// run, so the guest's flags stay in the host's RFLAGS.
struct HostAssembler {
    enum Register: UInt8 {
        case rax = 0, rcx = 1, rdx = 2, rbx = 3, rbp = 5, rsi = 6, rdi = 7
        case r8 = 8, r9 = 9, r10 = 10, r11 = 11, r12 = 12, r13 = 13, r14 = 14, r15 = 15
    }

    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(4096) }

    var position: Int { bytes.count }

    // MARK: Guest register slots

    /// The displacement from rdi of guest register `index` as an operand of `size` bytes: byte
    /// registers 16...19 are AH, CH, DH, BH (the second byte of rax...rbx).
    static func slot(_ index: UInt8, size: UInt8) -> UInt8 {
        size == 1 && index >= 16 ? 8 * (index & 3) + 1 : 8 * (index & 15)
    }

    /// Guest registers the block keeps in host registers (rbp, r14, r12, r15) from its entry to
    /// its exits, which write them back; only registers the trace accesses as 4 or 8 bytes.
    var registerCache: [(guest: UInt8, host: Register)] = []
    /// Filled by a dry run: every guest register access (index, size) the trace makes.
    var accesses: [(index: UInt8, size: UInt8)]?
    /// Whether any guest memory access was emitted (a TLB check: r11 and r13 are then scratch).
    var usesGuestMemory = false

    /// Host registers that can hold guest registers for a whole block: rbp, r14, r12 and r15
    /// always; r13 and r11 too in a block that never touches guest memory (only the TLB check
    /// and the stack operations use them).
    static func cacheRegisters(blockUsesGuestMemory: Bool) -> [Register] {
        blockUsesGuestMemory ? [.rbp, .r14, .r12, .r15] : [.rbp, .r14, .r12, .r15, .r13, .r11]
    }

    /// The host register holding guest register `index` for a `size`-byte operand, if the block
    /// caches it (never for byte or word operands): instructions on cached registers alone run
    /// on them directly, as one host instruction (a 4-byte result zero-extends in the host
    /// register as in the guest's).
    func cached(_ index: UInt8, size: UInt8) -> Register? { cachedHost(index, size: size) }

    private func cachedHost(_ index: UInt8, size: UInt8) -> Register? {
        guard index < 16, size >= 4 else { return nil }
        return registerCache.first { $0.guest == index }?.host
    }

    /// `mov [slot], host` for every cached register (before leaving the block).
    mutating func writeBackCachedRegisters() {
        for (guest, host) in registerCache { slotAccess(opcode: 0x89, host, Self.slot(guest, size: 8), size: 8) }
    }

    /// `mov host, [slot]` for every cached register (on entering the block).
    mutating func loadCachedRegisters() {
        for (guest, host) in registerCache { slotAccess(opcode: 0x8B, host, Self.slot(guest, size: 8), size: 8) }
    }

    /// `mov host, guest` of `size` bytes (a 4-byte load zero-extends).
    mutating func load(_ host: Register, guest index: UInt8, size: UInt8) {
        accesses?.append((index, size))
        if let cachedHost = cachedHost(index, size: size) {
            move(size: size, host, cachedHost)
        } else {
            slotAccess(opcode: size == 1 ? 0x8A : 0x8B, host, Self.slot(index, size: size), size: size)
        }
    }

    /// `mov guest, host`: 8 bytes for a 4-byte result (x86-64 zero-extends 32-bit results), else `size`.
    mutating func store(_ host: Register, guest index: UInt8, size: UInt8) {
        accesses?.append((index, size))
        if let cachedHost = cachedHost(index, size: size) {
            move(size: 8, cachedHost, host)  // a 4-byte result is zero-extended in the host register
        } else {
            let width: UInt8 = size == 4 ? 8 : size
            slotAccess(opcode: width == 1 ? 0x88 : 0x89, host, Self.slot(index, size: size), size: width)
        }
    }

    private mutating func slotAccess(opcode: UInt8, _ host: Register, _ displacement: UInt8, size: UInt8) {
        prefixes(size: size, reg: host.rawValue, rm: Register.rdi.rawValue)
        emit(opcode, 0x40 | (host.rawValue & 7) << 3 | Register.rdi.rawValue, displacement)
    }

    // MARK: Register to register

    /// Operand-size prefix and REX for `size` with ModRM.reg `reg` and ModRM.rm `rm`.
    mutating func prefixes(size: UInt8, reg: UInt8 = 0, rm: UInt8 = 0, index: UInt8 = 0) {
        if size == 2 { bytes.append(0x66) }
        var rex: UInt8 = 0
        if size == 8 { rex |= 0x48 }
        if reg & 8 != 0 { rex |= 0x44 }
        if index & 8 != 0 { rex |= 0x42 }
        if rm & 8 != 0 { rex |= 0x41 }
        if rex != 0 { bytes.append(rex | 0x40) }
    }

    mutating func registerForm(size: UInt8, opcode: Opcode, reg: UInt8, rm: Register) {
        prefixes(size: size, reg: reg, rm: rm.rawValue)
        emit(opcode)
        bytes.append(0xC0 | (reg & 7) << 3 | (rm.rawValue & 7))
    }

    /// add, or, adc, sbb, and, sub, xor, cmp (`kind` 0...7) of `source` into `destination`.
    mutating func alu(_ kind: UInt8, size: UInt8, _ destination: Register, _ source: Register) {
        registerForm(size: size, opcode: Opcode(kind << 3 | (size == 1 ? 0 : 1)), reg: source.rawValue, rm: destination)
    }

    /// The same with an immediate (sign-extended from 32 bits for 8-byte operands).
    mutating func alu(_ kind: UInt8, size: UInt8, _ destination: Register, immediate: UInt64) {
        registerForm(size: size, opcode: Opcode(size == 1 ? 0x80 : 0x81), reg: kind, rm: destination)
        immediateBytes(immediate, size: size)
    }

    mutating func test(size: UInt8, _ destination: Register, _ source: Register) {
        registerForm(size: size, opcode: Opcode(size == 1 ? 0x84 : 0x85), reg: source.rawValue, rm: destination)
    }

    mutating func test(size: UInt8, _ destination: Register, immediate: UInt64) {
        registerForm(size: size, opcode: Opcode(size == 1 ? 0xF6 : 0xF7), reg: 0, rm: destination)
        immediateBytes(immediate, size: size)
    }

    /// inc (0), dec (1) in the FE/FF group; not (2), neg (3) in the F6/F7 group.
    mutating func unary(_ kind: UInt8, size: UInt8, _ register: Register) {
        let group: UInt8 = kind < 2 ? (size == 1 ? 0xFE : 0xFF) : (size == 1 ? 0xF6 : 0xF7)
        registerForm(size: size, opcode: Opcode(group), reg: kind, rm: register)
    }

    /// rol, ror, rcl, rcr, shl, shr, sal, sar (`kind` 0...7) by an immediate count.
    mutating func shift(_ kind: UInt8, size: UInt8, _ register: Register, count: UInt8) {
        registerForm(size: size, opcode: Opcode(size == 1 ? 0xC0 : 0xC1), reg: kind, rm: register)
        bytes.append(count)
    }

    /// The same by CL.
    mutating func shiftByCL(_ kind: UInt8, size: UInt8, _ register: Register) {
        registerForm(size: size, opcode: Opcode(size == 1 ? 0xD2 : 0xD3), reg: kind, rm: register)
    }

    /// `imul destination, source` (2, 4 or 8 bytes).
    mutating func multiply(size: UInt8, _ destination: Register, _ source: Register) {
        registerForm(size: size, opcode: Opcode(0x0F, 0xAF), reg: destination.rawValue, rm: source)
    }

    /// `imul destination, source, immediate`.
    mutating func multiply(size: UInt8, _ destination: Register, _ source: Register, immediate: UInt64) {
        registerForm(size: size, opcode: Opcode(0x69), reg: destination.rawValue, rm: source)
        immediateBytes(immediate, size: size)
    }

    /// movzx/movsx into `destination` (`size` bytes) from the low `sourceSize` bytes of `source`;
    /// movsxd for a 4-byte source.
    mutating func extend(signed: Bool, size: UInt8, _ destination: Register, _ source: Register, sourceSize: UInt8) {
        if sourceSize == 4 {
            registerForm(size: 8, opcode: Opcode(0x63), reg: destination.rawValue, rm: source)
            return
        }
        let opcode: UInt8 = (signed ? 0xBE : 0xB6) | (sourceSize == 2 ? 1 : 0)
        registerForm(size: size, opcode: Opcode(0x0F, opcode), reg: destination.rawValue, rm: source)
    }

    mutating func conditionalMove(_ condition: UInt8, size: UInt8, _ destination: Register, _ source: Register) {
        registerForm(size: size, opcode: Opcode(0x0F, 0x40 | condition), reg: destination.rawValue, rm: source)
    }

    /// `setcc` of the low byte of `register` (al or dl: no REX needed).
    mutating func setByte(_ condition: UInt8, _ register: Register) {
        emit(0x0F, 0x90 | condition, 0xC0 | register.rawValue)
    }

    /// `mov destination, source` (8 bytes; `mov eax, eax` zero-extends when `size` is 4).
    mutating func move(size: UInt8, _ destination: Register, _ source: Register) {
        registerForm(size: size, opcode: Opcode(0x89), reg: source.rawValue, rm: destination)
    }

    /// `mov register, immediate` of 8 bytes; flags are untouched, as by every mov.
    mutating func move(_ register: Register, immediate: UInt64) {
        emit(register.rawValue & 8 != 0 ? 0x49 : 0x48, 0xB8 | (register.rawValue & 7))
        littleEndian(immediate, count: 8)
    }

    /// `lea destination, [base + index * scale + displacement]` with a 32-bit displacement.
    mutating func loadAddress(_ destination: Register, base: Register, index: Register, scale: UInt8, displacement: Int32) {
        prefixes(size: 8, reg: destination.rawValue, rm: base.rawValue, index: index.rawValue)
        emit(0x8D, 0x84 | (destination.rawValue & 7) << 3, scale << 6 | (index.rawValue & 7) << 3 | (base.rawValue & 7))
        littleEndian(UInt64(UInt32(bitPattern: displacement)), count: 4)
    }

    /// `rax += the base of segment register `segment` (FS 4, GS 5)`, read at run time from the
    /// CPU's segment bases, whose address is [rsi + 64] (wrfsbase, swapgs and the MSRs change
    /// them between blocks): flag-free, through r9.
    mutating func addSegmentBase(_ segment: UInt8) {
        emit(0x4C, 0x8B, 0x4E, 0x40)  // mov r9, [rsi+64]
        emit(0x4D, 0x8B, 0x49, 8 * segment)  // mov r9, [r9 + 8 * segment]
        loadAddress(.rax, base: .rax, index: .r9, scale: 0, displacement: 0)
    }

    // MARK: Flags and the block's frame

    /// Saves rbx, rbp and r12...r15; loads the instruction budget (rbx), the TLB (r8) and guest
    /// RAM (r10) from the frame.
    mutating func prologue() {
        emit(0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56)
        emit(0x41, 0x57)  // push rbx, rbp, r12...r15
        emit(0x48, 0x8B, 0x5E, 0x08)  // mov rbx, [rsi+8]
        emit(0x4C, 0x8B, 0x46, 0x18)  // mov r8, [rsi+24]
        emit(0x4C, 0x8B, 0x56, 0x20)  // mov r10, [rsi+32]
    }

    /// Replaces the host's six arithmetic flags with those in [rsi] without popf (slow on every
    /// host): OF from `add al, 0x7F` on 0 or 1, the other five with sahf. Clobbers rax and rdx.
    mutating func loadArithmeticFlags() {
        emit(0x48, 0x8B, 0x16)  // mov rdx, [rsi]
        emit(0x89, 0xD0, 0xC1, 0xE8, 0x0B, 0x83, 0xE0, 0x01)  // mov eax, edx; shr eax, 11; and eax, 1
        emit(0x04, 0x7F)  // add al, 0x7F: OF = the guest's OF
        emit(0x88, 0xD4, 0x9E)  // mov ah, dl; sahf: SF, ZF, AF, PF, CF
    }

    /// [rsi] = RFLAGS, [rsi + 8] = the budget left, restores rbx, rbp and r12...r15, and returns
    /// (rax holds the next guest RIP).
    mutating func saveStateAndReturn() {
        emit(0x9C, 0x5A, 0x48, 0x89, 0x16)  // pushfq; pop rdx; mov [rsi], rdx
        emit(0x48, 0x89, 0x5E, 0x08)  // mov [rsi+8], rbx
        emit(0x41, 0x5F, 0x41, 0x5E, 0x41, 0x5D, 0x41, 0x5C)
        emit(0x5D, 0x5B, 0xC3)  // pop r15...r12, rbp, rbx; ret
    }

    /// `lea rbx, [rbx + disp32]`; returns the displacement's offset (patched once the block's
    /// length is known).
    mutating func adjustBudget() -> Int {
        emit(0x48, 0x8D, 0x9B, 0, 0, 0, 0)
        return bytes.count - 4
    }

    /// Sets a 32-bit field written earlier (a budget adjustment).
    mutating func setField(_ field: Int, to value: Int32) {
        let raw = UInt32(bitPattern: value)
        for index in 0..<4 { bytes[field + index] = UInt8(truncatingIfNeeded: raw >> (8 * index)) }
    }

    /// Leaves (returns the rel32 field of the jump) when the budget in rbx went negative;
    /// flag-free: rcx = rbx >> 12 (shrx) is zero exactly while 0 <= rbx < 4096, and budgets
    /// never exceed 4095.
    mutating func jumpIfBudgetExhausted() -> Int {
        loadShiftCount(12)
        bmi2Shift(left: false, .rcx, .rbx, count: .rcx)
        return jumpUnlessRCXZero()
    }

    /// Leaves (returns the rel32 field of the jump) when the 32-bit word [rsi + 56] points to
    /// is not zero: this vCPU's mail (IPIs, INIT, code and TLB invalidations from other vCPUs).
    mutating func jumpIfMail() -> Int {
        emit(0x48, 0x8B, 0x4E, 0x38, 0x8B, 0x09)  // mov rcx, [rsi+56]; mov ecx, [rcx]
        return jumpUnlessRCXZero()
    }

    /// [rsi + 16] = the address of the rel32 field at `field` (so the VMM can link it), flag-free.
    mutating func recordLinkSite(_ field: Int) {
        emit(0x48, 0x8D, 0x15)  // lea rdx, [rip + disp32]
        littleEndian(UInt64(UInt32(bitPattern: Int32(field - (bytes.count + 4)))), count: 4)
        emit(0x48, 0x89, 0x56, 0x10)  // mov [rsi+16], rdx
    }

    /// The table lookup for an indirect branch (target in rax): the entry at (rax & 0x3FFF) * 32
    /// from [rsi + 40] must hold rax and the tag [rsi + 48], and a chain entry, which it jumps
    /// to; otherwise it jumps to the returned field (the epilogue). Flag-free.
    mutating func lookUpAndJump() -> [Int] {
        loadShiftCount(50)
        bmi2Shift(left: true, .r9, .rax, count: .rcx)
        bmi2Shift(left: false, .rcx, .r9, count: .rcx)  // rcx = rax & 0x3FFF: the slot
        emit(0x48, 0x8D, 0x0C, 0x8D, 0, 0, 0, 0)  // lea rcx, [rcx * 4]
        emit(0x4C, 0x8B, 0x4E, 0x28)  // mov r9, [rsi+40]
        emit(0x4D, 0x8D, 0x0C, 0xC9)  // lea r9, [r9 + rcx*8]: the entry
        var misses: [Int] = []
        // rcx = [r9] - rax
        emit(0x48, 0x89, 0xC2, 0x48, 0xF7, 0xD2)  // mov rdx, rax; not rdx
        emit(0x49, 0x8B, 0x09, 0x48, 0x8D, 0x4C, 0x11, 0x01)  // mov rcx, [r9]; lea rcx, [rcx + rdx + 1]
        misses.append(jumpUnlessRCXZero())
        // rcx = [r9 + 8] - [rsi + 48]
        emit(0x48, 0x8B, 0x56, 0x30, 0x48, 0xF7, 0xD2)  // mov rdx, [rsi+48]; not rdx
        emit(0x49, 0x8B, 0x49, 0x08, 0x48, 0x8D, 0x4C, 0x11)
        emit(0x01)  // mov rcx, [r9+8]; lea rcx, [rcx + rdx + 1]
        misses.append(jumpUnlessRCXZero())
        emit(0x49, 0x8B, 0x49, 0x10)  // mov rcx, [r9+16]: the chain entry
        let none = jumpIfRCXZero()
        emit(0xFF, 0xE1)  // jmp rcx
        bind(none, to: position, short: true)
        misses.append(jump())
        return misses
    }

    // MARK: Control flow (rel32 unless said; targets patched with `bind`)

    mutating func jump() -> Int {
        emit(0xE9, 0, 0, 0, 0)
        return bytes.count - 4
    }

    mutating func jump(if condition: UInt8) -> Int {
        emit(0x0F, 0x80 | condition, 0, 0, 0, 0)
        return bytes.count - 4
    }

    /// Leaves (returns the rel32 field of the jump) unless rax == `expected`; flag-free.
    mutating func jumpUnless(rax expected: UInt64) -> Int {
        move(.rcx, immediate: 0 &- expected)
        loadAddress(.rcx, base: .rcx, index: .rax, scale: 0, displacement: 0)
        return jumpUnlessRCXZero()
    }

    /// `jrcxz` (rel8).
    mutating func jumpIfRCXZero() -> Int {
        emit(0xE3, 0)
        return bytes.count - 1
    }

    /// Leaves (returns the rel32 field of the jump) unless rcx is zero: `jrcxz` over a `jmp`,
    /// the flag-free conditional branch every check in translated code uses.
    mutating func jumpUnlessRCXZero() -> Int {
        let zero = jumpIfRCXZero()
        let field = jump()
        bind(zero, to: position, short: true)
        return field
    }

    /// `mov ecx, count`: the count register of a BMI2 shift (rcx is scratch until compared).
    mutating func loadShiftCount(_ count: UInt8) {
        emit(0xB9, count, 0, 0, 0)
    }

    /// Points the rel32 (or, for `short`, rel8) field at `field` to `target`.
    mutating func bind(_ field: Int, to target: Int, short: Bool = false) {
        if short {
            bytes[field] = UInt8(bitPattern: Int8(target - (field + 1)))
        } else {
            setField(field, to: Int32(target - (field + 4)))
        }
    }

    // MARK: Encoding helpers

    /// One or two opcode bytes, without an array: encoding a block used to allocate a temporary
    /// array per host instruction, most of the translator's time.
    struct Opcode {
        let first: UInt8
        let second: UInt8?
        init(_ first: UInt8) { (self.first, second) = (first, nil) }
        init(_ first: UInt8, _ second: UInt8) { (self.first, self.second) = (first, second) }
    }

    mutating func emit(_ opcode: Opcode) {
        bytes.append(opcode.first)
        if let second = opcode.second { bytes.append(second) }
    }

    // Fixed-arity appends (an array literal per call allocated).
    mutating func emit(_ a: UInt8) { bytes.append(a) }
    mutating func emit(_ a: UInt8, _ b: UInt8) {
        bytes.append(a)
        bytes.append(b)
    }
    mutating func emit(_ a: UInt8, _ b: UInt8, _ c: UInt8) {
        emit(a, b)
        bytes.append(c)
    }
    mutating func emit(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        emit(a, b)
        emit(c, d)
    }
    mutating func emit(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ e: UInt8) {
        emit(a, b, c, d)
        bytes.append(e)
    }
    mutating func emit(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ e: UInt8, _ f: UInt8) {
        emit(a, b, c, d)
        emit(e, f)
    }
    mutating func emit(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ e: UInt8, _ f: UInt8, _ g: UInt8) {
        emit(a, b, c, d)
        emit(e, f, g)
    }
    mutating func emit(
        _ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ e: UInt8, _ f: UInt8, _ g: UInt8, _ h: UInt8
    ) {
        emit(a, b, c, d)
        emit(e, f, g, h)
    }

    mutating func immediateBytes(_ value: UInt64, size: UInt8) {
        littleEndian(value, count: size == 8 ? 4 : Int(size))
    }

    mutating func littleEndian(_ value: UInt64, count: Int) {
        for index in 0..<count { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * index))) }
    }

}
