/// Port 0x80 (the POST-code port): the guest writes a milestone number at each boot stage and
/// the VMM stamps it with the monotonic clock, so boot time is measured from outside the guest.
///
/// Codes in `residencyCodes` (the memory benchmarks' probes around each timed section) also
/// record how much of guest RAM the host holds at that moment (`residentBytes`), so a balloon's
/// effect on host memory is measured by the host, not reported by the guest. Only those codes
/// pay for the count, so boot milestones stay as cheap as before.
public final class BootMilestoneDevice: BusDevice {
    public static let port: UInt64 = 0x80
    public static let residencyCodes: ClosedRange<UInt8> = 0x40...0x4F
    /// Milestones kept: a benchmark's probes (two per repetition) fit, a guest spinning on the
    /// port does not grow the list forever.
    public static let capacity = 1024

    public struct Milestone: Equatable, Sendable {
        public let code: UInt8
        public let nanoseconds: UInt64
        /// Bytes of guest RAM resident on the host (residency codes, with a probe set).
        public var residentBytes: UInt64? = nil
    }

    public private(set) var milestones: [Milestone] = []
    /// Counts guest RAM resident on the host (set by the VM).
    public var residentBytes: (() -> UInt64)?

    public init() {
        milestones.reserveCapacity(16)
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.storeLittleEndian(UInt64(milestones.last?.code ?? 0))
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        // A guest spinning on port 0x80 (the classic I/O delay) must not grow this forever.
        guard milestones.count < Self.capacity else { return }
        let code = UInt8(truncatingIfNeeded: data.littleEndianValue)
        var milestone = Milestone(code: code, nanoseconds: MonotonicClock.nanoseconds())
        if Self.residencyCodes.contains(code) { milestone.residentBytes = residentBytes?() }
        milestones.append(milestone)
    }
}
