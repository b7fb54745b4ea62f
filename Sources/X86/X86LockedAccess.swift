import CGuestAtomics

/// The lazy arithmetic flags, saved while a locked instruction may still have to run again.
struct SavedFlags {
    var source: X86CPU.FlagSource = .explicit
    var a: UInt64 = 0
    var b: UInt64 = 0
    var result: UInt64 = 0
    var bits: UInt64 = 64
    var carry = false
    var value: UInt64 = 0
}

/// Locked read-modify-write instructions (`lock` prefix, `xchg` with memory) on RAM that other
/// vCPU threads share: the load is an ordinary one, and the store is a host compare-and-swap
/// against the value the load saw. If another vCPU changed the operand in between, nothing is
/// written and the instruction runs again (`X86Fault.retry`), so the update is atomic against
/// every other vCPU's stores, plain or locked, as x86 requires. Between the load and the store
/// an instruction changes only the lazy flags, which are restored before it runs again.
extension X86CPU {
    @inline(__always)
    func beginLockedAccess(_ value: UInt64) {
        lockedOriginal = value
        lockedSavedFlags = SavedFlags(
            source: flagSource, a: flagA, b: flagB, result: flagResult, bits: flagBits, carry: flagCarry, value: flagValue)
    }

    private func abandonLockedAccess() -> X86Fault {
        let saved = lockedSavedFlags
        flagSource = saved.source
        flagA = saved.a
        flagB = saved.b
        flagResult = saved.result
        flagBits = saved.bits
        flagCarry = saved.carry
        flagValue = saved.value
        return .retry
    }

    /// The store of a locked instruction: `value` replaces `lockedOriginal` atomically.
    @inline(never)
    func lockedWrite(_ linear: UInt64, size: UInt8, _ value: UInt64) throws(X86Fault) {
        guard (linear & 0xFFF) <= 4096 - UInt64(size) else {
            // Straddles two pages (each translated and checked by the ordinary paths).
            return try splitLocked { () throws(X86Fault) in
                guard try read(linear, size: size) == lockedOriginal else { throw abandonLockedAccess() }
                try write(linear, size: size, value)
            }
        }
        let entry = tlbEntry(linear)
        let physical: UInt64
        if entry.pointee.writeTag == (linear & ~0xFFF) | userTagBit {
            physical = linear &+ entry.pointee.physicalOffset
        } else {
            physical = try translate(linear, write: true, fetch: false)
            guard physical < ramSize && physical &+ UInt64(size) <= ramSize else {
                // The APIC page or a device: the VMM serialises device work between vCPUs.
                return try write(linear, size: size, value)
            }
            if codePages[Int(physical >> 12)] != 0 { noteCodeWrite(physical: physical, size: size) }
        }
        let offset = physical & 7
        guard offset &+ UInt64(size) <= 8 else {
            return try splitLocked { () throws(X86Fault) in
                let pointer = hostPointer(physical: physical)
                guard Self.load(pointer, size: size) == lockedOriginal else { throw abandonLockedAccess() }
                Self.store(pointer, size: size, value)
            }
        }
        // A compare-and-swap of the aligned 8 bytes that hold the operand, so neighbouring bytes
        // other vCPUs store to meanwhile are kept.
        let word = hostPointer(physical: physical & ~7)
        let shift = offset << 3
        let mask = Self.mask(size: size) << shift
        while true {
            let current = cga_load_64(word)
            guard (current & mask) >> shift == lockedOriginal else { throw abandonLockedAccess() }
            if cga_cas_64(word, current, (current & ~mask) | ((value << shift) & mask)) { return }
        }
    }

    /// An operand that crosses an 8-byte boundary has no host compare-and-swap: such locked
    /// instructions are serialised with each other, though not against plain stores (a split
    /// lock, which x86 makes atomic at great cost, and which guests avoid).
    private func splitLocked(_ body: () throws(X86Fault) -> Void) throws(X86Fault) {
        guard let processors else { return try body() }
        try processors.splitLock.withLock { (_: inout Void) throws(X86Fault) in try body() }
    }
}
