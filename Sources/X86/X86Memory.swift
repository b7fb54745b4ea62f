import CGuestAtomics

/// One software-TLB entry: a 4 KiB linear page mapped to guest RAM.
///
/// Tags are the linear page address with bit 0 set for user-mode (CPL3) lookups; an entry
/// filled for a supervisor access never answers a user access, and vice versa. `writeTag` is
/// set only when the page is writable for that privilege, its dirty bit is already set and no
/// cached instruction comes from it, so the fast write path needs no further checks.
struct TLBEntry {
    static let invalid: UInt64 = 0xFFF
    var readTag: UInt64 = TLBEntry.invalid
    var writeTag: UInt64 = TLBEntry.invalid
    /// Guest-physical page minus linear page (wrapping).
    var physicalOffset: UInt64 = 0
}

/// Port I/O and MMIO accesses of the instruction being executed.
///
/// The VMM answers device accesses between two `run()` calls, so an instruction that needs one
/// stops (`X86Fault.deviceExit`) before changing any architectural state and is executed again
/// after the answer; on that re-execution the accesses already answered replay from this log,
/// in order. An instruction that completes clears it.
final class DeviceLog {
    enum Kind: UInt8 { case port, mmio }
    struct Entry {
        var kind: Kind
        var address: UInt64
        var size: Int
        var count: Int
        var isWrite: Bool
        var offset: Int
    }
    static let bufferSize = 16384
    var entries: [Entry] = [] { didSet { isEmpty = entries.isEmpty } }
    /// `entries.isEmpty`, kept as a stored flag: it is checked after every instruction.
    var isEmpty = true
    var replayIndex = 0
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: DeviceLog.bufferSize, alignment: 16)
    var used = 0

    init() { entries.reserveCapacity(8) }
    deinit { buffer.deallocate() }

    /// A stale index over an empty log is harmless (the first access appends), so the common
    /// case costs a load rather than a store.
    @inline(__always) func beginInstruction() { if !isEmpty { replayIndex = 0 } }
    @inline(__always) func instructionCompleted() {
        if !isEmpty {
            entries.removeAll(keepingCapacity: true)
            used = 0
            replayIndex = 0
        }
    }
}

extension X86CPU {
    // MARK: Fast paths

    @inline(__always) var userTagBit: UInt64 { cpl == 3 ? 1 : 0 }

    @inline(__always)
    func hostPointer(physical: UInt64) -> UnsafeMutableRawPointer {
        ram + Int(truncatingIfNeeded: physical)
    }

    /// The software-TLB entry that caches linear `linear`'s page.
    @inline(__always)
    func tlbEntry(_ linear: UInt64) -> UnsafeMutablePointer<TLBEntry> {
        tlb + Int(truncatingIfNeeded: (linear >> 12) & UInt64(Self.tlbEntries - 1))
    }

    /// The host address of linear `linear` where the software TLB already maps its page for
    /// reading or writing with the current privilege (the fast paths' whole condition but the
    /// access staying in the page), or nil.
    @inline(__always)
    func mappedByTLB(_ linear: UInt64, write: Bool) -> UnsafeMutableRawPointer? {
        let entry = tlbEntry(linear)
        let tag = write ? entry.pointee.writeTag : entry.pointee.readTag
        guard tag == (linear & ~0xFFF) | userTagBit else { return nil }
        return hostPointer(physical: linear &+ entry.pointee.physicalOffset)
    }

    /// Reads `size` (1, 2, 4, 8) bytes at a linear address. (The tag comparison is written out
    /// rather than through `mappedByTLB`: with that form the interpreter's cpu.int measured
    /// −9.2% [−11.5, −4.4] in a 14-round interleaved `hvbench ab`.)
    @inline(__always)
    func read(_ linear: UInt64, size: UInt8) throws(X86Fault) -> UInt64 {
        let entry = tlbEntry(linear)
        if entry.pointee.readTag == (linear & ~0xFFF) | userTagBit && (linear & 0xFFF) <= 4096 - UInt64(size) {
            let pointer = hostPointer(physical: linear &+ entry.pointee.physicalOffset)
            return Self.load(pointer, size: size)
        }
        return try readSlow(linear, size: size)
    }

    /// Writes `size` bytes at a linear address.
    @inline(__always)
    func write(_ linear: UInt64, size: UInt8, _ value: UInt64) throws(X86Fault) {
        let entry = tlbEntry(linear)
        if entry.pointee.writeTag == (linear & ~0xFFF) | userTagBit && (linear & 0xFFF) <= 4096 - UInt64(size) {
            let pointer = hostPointer(physical: linear &+ entry.pointee.physicalOffset)
            Self.store(pointer, size: size, value)
            return
        }
        try writeSlow(linear, size: size, value)
    }

    /// Guest RAM is shared with other vCPU threads: loads and stores keep x86's ordering (see
    /// CGuestAtomics) and are never torn or merged by the compiler.
    @inline(__always)
    static func load(_ pointer: UnsafeMutableRawPointer, size: UInt8) -> UInt64 {
        switch size {
        case 1: return UInt64(cga_load_8(pointer))
        case 2: return UInt64(cga_load_16(pointer))
        case 4: return UInt64(cga_load_32(pointer))
        default: return cga_load_64(pointer)
        }
    }

    @inline(__always)
    static func store(_ pointer: UnsafeMutableRawPointer, size: UInt8, _ value: UInt64) {
        switch size {
        case 1: cga_store_8(pointer, UInt8(truncatingIfNeeded: value))
        case 2: cga_store_16(pointer, UInt16(truncatingIfNeeded: value))
        case 4: cga_store_32(pointer, UInt32(truncatingIfNeeded: value))
        default: cga_store_64(pointer, value)
        }
    }

    // MARK: Slow paths

    @inline(never)
    func readSlow(_ linear: UInt64, size: UInt8) throws(X86Fault) -> UInt64 {
        if (linear & 0xFFF) > 4096 - UInt64(size) {
            // Crosses a page: byte by byte, each byte translated (and faulting) on its own.
            var value: UInt64 = 0
            for index in 0..<UInt64(size) {
                value |= try read(linear &+ index, size: 1) << (index << 3)
            }
            return value
        }
        let physical = try translate(linear, write: false, fetch: false)
        if physical < ramSize && physical &+ UInt64(size) <= ramSize {
            let pointer = hostPointer(physical: physical)
            return Self.load(pointer, size: size)
        }
        if apicPage(contains: physical) { return apicRead(physical: physical, size: size) }
        return try deviceAccess(.mmio, address: physical, size: Int(size), count: 1, isWrite: false, value: 0)
    }

    @inline(never)
    func writeSlow(_ linear: UInt64, size: UInt8, _ value: UInt64) throws(X86Fault) {
        if (linear & 0xFFF) > 4096 - UInt64(size) {
            // Check every byte's page first so a fault on the second page writes nothing.
            for index in 0..<UInt64(size) { _ = try translate(linear &+ index, write: true, fetch: false) }
            for index in 0..<UInt64(size) {
                try write(linear &+ index, size: 1, value >> (index << 3))
            }
            return
        }
        let physical = try translate(linear, write: true, fetch: false)
        if physical < ramSize && physical &+ UInt64(size) <= ramSize {
            if codePages[Int(physical >> 12)] != 0 { noteCodeWrite(physical: physical, size: size) }
            let pointer = hostPointer(physical: physical)
            Self.store(pointer, size: size, value)
            return
        }
        if apicPage(contains: physical) { return apicWrite(physical: physical, size: size, value) }
        _ = try deviceAccess(.mmio, address: physical, size: Int(size), count: 1, isWrite: true, value: value)
    }

    /// A write hit a page holding cached instructions: drop this vCPU's cache if it hit its
    /// lines, and tell the other vCPUs whose lines it hit.
    func noteCodeWrite(physical: UInt64, size: UInt8) {
        let first = Int(physical >> 6)
        let last = Int((physical &+ UInt64(size) &- 1) >> 6)
        let holders = codeLines[first] | codeLines[last]
        if holders & codeBit != 0 { invalidateDecodedCode() }
        if holders & ~codeBit != 0 { processors?.codeWritten(holders: holders & ~codeBit) }
    }

    /// Up to `count` bytes of RAM from linear `linear`, for reports: no device access, no fault,
    /// CR2 untouched; stops at the first byte that is not mapped RAM.
    func peekCode(at linear: UInt64, count: Int) -> [UInt8] {
        let savedCR2 = cr2
        defer { cr2 = savedCR2 }
        var bytes: [UInt8] = []
        for index in 0..<UInt64(count) {
            guard let physical = try? translate(linear &+ index, write: false, fetch: true), physical < ramSize else { break }
            bytes.append(hostPointer(physical: physical).load(as: UInt8.self))
        }
        return bytes
    }

    // MARK: Translation

    /// Linear to guest-physical, checking permissions for the current privilege level and filling
    /// the TLB. Raises #PF (with CR2 and the error code) or #GP for non-canonical addresses.
    func translate(_ linear: UInt64, write: Bool, fetch: Bool) throws(X86Fault) -> UInt64 {
        let user = cpl == 3
        guard pagingEnabled else {
            let physical = linear & 0xFFFF_FFFF
            fill(linear: linear, physical: physical, user: user, writable: true)
            return physical
        }
        guard longModeActive else {
            throw .shutdown("paging without long mode (legacy 32-bit or PAE paging) is not implemented by the emulator")
        }
        let top = Int64(bitPattern: linear) >> 47
        guard top == 0 || top == -1 else {
            throw .exception(vector: X86Vector.generalProtection, errorCode: 0)
        }
        var table = cr3 & 0x000F_FFFF_FFFF_F000
        var writable = true
        var userAllowed = true
        var executable = true
        var level = 4
        var entryAddress: UInt64 = 0
        var entry: UInt64 = 0
        let noExecuteEnabled = efer & 0x800 != 0
        while true {
            let shift = UInt64(12 + 9 * (level - 1))
            entryAddress = table | (((linear >> shift) & 0x1FF) << 3)
            guard entryAddress &+ 8 <= ramSize else {
                throw .shutdown(
                    "page table at 0x\(String(entryAddress, radix: 16)) is outside guest RAM (walking 0x\(String(linear, radix: 16)))"
                )
            }
            entry = cga_load_64(hostPointer(physical: entryAddress))
            if entry & 1 == 0 {
                throw pageFault(linear, present: false, write: write, user: user, fetch: fetch, reserved: false)
            }
            if noExecuteEnabled == false && entry & (1 << 63) != 0 {
                throw pageFault(linear, present: true, write: write, user: user, fetch: fetch, reserved: true)
            }
            writable = writable && entry & 2 != 0
            userAllowed = userAllowed && entry & 4 != 0
            executable = executable && (entry & (1 << 63) == 0 || !noExecuteEnabled)
            // Accessed bit on every level that was used.
            // (An atomic OR, as the hardware's: another vCPU may be changing the same entry.)
            if entry & 0x20 == 0 {
                entry |= 0x20
                _ = cga_fetch_or_64(hostPointer(physical: entryAddress), 0x20)
            }
            let isLeaf = level == 1 || (entry & 0x80 != 0 && (level == 2 || level == 3))
            if entry & 0x80 != 0 && level == 4 {
                throw pageFault(linear, present: true, write: write, user: user, fetch: fetch, reserved: true)
            }
            if isLeaf { break }
            table = entry & 0x000F_FFFF_FFFF_F000
            level -= 1
        }
        // Permission checks: user pages for CPL3, writes (CR0.WP applies to supervisor), NX.
        let writeProtect = cr0 & 0x1_0000 != 0
        if (user && !userAllowed) || (write && !writable && (user || writeProtect)) || (fetch && !executable) {
            throw pageFault(linear, present: true, write: write, user: user, fetch: fetch, reserved: false)
        }
        if write && entry & 0x40 == 0 {
            entry |= 0x40
            _ = cga_fetch_or_64(hostPointer(physical: entryAddress), 0x40)
        }
        if fetch && !user && (entry & 0x100 == 0 || cr4 & 0x80 == 0) { kernelCodeOutsideGlobalPages = true }
        let pageSize: UInt64 = level == 1 ? 1 << 12 : (level == 2 ? 1 << 21 : 1 << 30)
        let frame = entry & 0x000F_FFFF_FFFF_F000 & ~(pageSize - 1)
        let physical = frame | (linear & (pageSize - 1))
        let writeAllowed = writable || (!user && !writeProtect)
        fill(linear: linear, physical: physical, user: user, writable: entry & 0x40 != 0 && writeAllowed)
        return physical
    }

    func pageFault(_ linear: UInt64, present: Bool, write: Bool, user: Bool, fetch: Bool, reserved: Bool) -> X86Fault {
        cr2 = linear
        var code: UInt32 = 0
        if present { code |= 1 }
        if write { code |= 2 }
        if user { code |= 4 }
        if reserved { code |= 8 }
        if fetch && efer & 0x800 != 0 { code |= 16 }
        return .exception(vector: X86Vector.pageFault, errorCode: code)
    }

    @inline(__always)
    func fill(linear: UInt64, physical: UInt64, user: Bool, writable: Bool) {
        let page = physical & ~0xFFF
        guard page &+ 4096 <= ramSize else { return }  // device pages are never cached
        let entry = tlbEntry(linear)
        let tag = (linear & ~0xFFF) | (user ? 1 : 0)
        entry.pointee.readTag = tag
        entry.pointee.writeTag = writable && codePages[Int(page >> 12)] == 0 ? tag : TLBEntry.invalid
        entry.pointee.physicalOffset = page &- (linear & ~0xFFF)
    }

    func flushTLB() {
        tlb.update(repeating: TLBEntry(), count: Self.tlbEntries)
    }

    // MARK: Decoded-code bookkeeping

    /// Records that an instruction was decoded from these physical bytes.
    func markCode(physical: UInt64, length: Int) {
        guard physical < ramSize else { return }
        let lastByte = min(physical &+ UInt64(length) &- 1, ramSize - 1)
        for line in Int(physical >> 6)...Int(lastByte >> 6) where codeLines[line] & codeBit == 0 {
            _ = cga_fetch_or_8(codeLines + line, codeBit)
            markedCodeLines.append(line)
        }
        for page in Int(physical >> 12)...Int(lastByte >> 12) where codePages[page] & codeBit == 0 {
            let holders = cga_fetch_or_8(codePages + page, codeBit)
            markedCodePages.append(page)
            // Writes to this page must now take the slow path, which checks for code: here, and
            // on the other vCPUs if no one held code in it before.
            flushTLB()
            if holders == 0 { processors?.codePageMarked(by: self) }
        }
    }

    /// CR3 was written: the user side's cached code is stale, and the kernel's too unless all of
    /// it was fetched from global pages (see `decodeGeneration`).
    func addressSpaceChanged() {
        guard !kernelCodeOutsideGlobalPages, lastCodeGeneration < 0x7FFF_FFF0 else { return invalidateDecodedCode() }
        lastCodeGeneration &+= 1
        userCodeGeneration = lastCodeGeneration
    }

    /// Forgets every decoded instruction (code was written, or the code's mapping changed).
    func invalidateDecodedCode() {
        if lastCodeGeneration >= 0x7FFF_FFF0 {  // the top bit marks supervisor-only code (see step())
            decodeTable.clear()
            translation?.forgetAll()
            lastCodeGeneration = 0
        }
        kernelCodeGeneration = lastCodeGeneration &+ 1
        userCodeGeneration = lastCodeGeneration &+ 2
        lastCodeGeneration &+= 2
        kernelCodeOutsideGlobalPages = false
        for line in markedCodeLines { _ = cga_fetch_and_8(codeLines + line, ~codeBit) }
        for page in markedCodePages { _ = cga_fetch_and_8(codePages + page, ~codeBit) }
        markedCodeLines.removeAll(keepingCapacity: true)
        markedCodePages.removeAll(keepingCapacity: true)
        codeLinearPages.removeAll(keepingCapacity: true)
    }

    // MARK: Devices

    /// A port or MMIO access: answered from the replay log, or recorded and the instruction stopped.
    /// For `count` > 1 (string port I/O) the data lives in the log buffer; the return value is 0.
    func deviceAccess(
        _ kind: DeviceLog.Kind, address: UInt64, size: Int, count: Int, isWrite: Bool, value: UInt64
    ) throws(X86Fault) -> UInt64 {
        let log = deviceLog
        if log.replayIndex < log.entries.count {
            let entry = log.entries[log.replayIndex]
            if entry.kind == kind && entry.address == address && entry.size == size && entry.count == count
                && entry.isWrite == isWrite
            {
                log.replayIndex += 1
                lastReplayedOffset = entry.offset
                if isWrite || count > 1 { return 0 }
                var result: UInt64 = 0
                for index in 0..<size {
                    result |= UInt64(log.buffer.load(fromByteOffset: entry.offset + index, as: UInt8.self)) << (index * 8)
                }
                return result
            }
            // The instruction took another path on re-execution (it cannot, unless memory
            // changed under it): start over from this access.
            log.entries.removeSubrange(log.replayIndex...)
        }
        let bytes = size * count
        guard log.used + bytes <= DeviceLog.bufferSize else {
            throw .shutdown("one instruction needed more than \(DeviceLog.bufferSize) bytes of device I/O")
        }
        let offset = log.used
        if isWrite && count == 1 {
            for index in 0..<size {
                log.buffer.storeBytes(
                    of: UInt8(truncatingIfNeeded: value >> (UInt64(index) * 8)), toByteOffset: offset + index, as: UInt8.self)
            }
        }
        log.used += bytes
        log.entries.append(.init(kind: kind, address: address, size: size, count: count, isWrite: isWrite, offset: offset))
        log.replayIndex = log.entries.count
        lastReplayedOffset = offset
        throw .deviceExit
    }
}
