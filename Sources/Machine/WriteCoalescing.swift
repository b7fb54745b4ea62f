/// MMIO writes an engine can buffer instead of exiting for each one (KVM's coalesced MMIO):
/// the guest's write completes at once, and the VMM applies the buffered writes, in order,
/// before it handles the next exit of any kind. So a device sees every write before any later
/// read or doorbell of the guest, just later than the write itself.
///
/// That only suits registers whose effect nothing waits on: a write the guest then waits for
/// without another exit (a receive tail it polls memory behind, an interrupt mask it halts
/// behind) would never be applied. Each device names its own ranges (see `E1000`).
public protocol WriteCoalescer: AnyObject {
    /// Buffers writes to [address, address + length) from now on; nil when the engine cannot.
    func coalesce(address: UInt64, length: UInt64) -> (any CoalescedRange)?
    /// Hands each buffered write to `write`, oldest first, and returns how many there were.
    /// Called on the vCPU thread only.
    func drain(_ write: (UInt64, UnsafeRawBufferPointer) -> Void) -> Int
}

/// One coalesced range; `cancel()` (or moving the BAR) makes its writes exit again.
public protocol CoalescedRange: AnyObject {
    func cancel()
}

/// The writable ranges of a register block outside a list of excluded registers: what a
/// device coalesces.
public func rangesBetween(excludedRegisters: [UInt64], registerWidth: UInt64 = 4, blockLength: UInt64) -> [Range<UInt64>] {
    var ranges: [Range<UInt64>] = []
    var start: UInt64 = 0
    for register in excludedRegisters.sorted() where register < blockLength {
        if register > start { ranges.append(start..<register) }
        start = max(start, register + registerWidth)
    }
    if start < blockLength { ranges.append(start..<blockLength) }
    return ranges
}
