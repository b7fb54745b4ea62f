/// Port 0x80 (the POST-code port): the guest writes a milestone number at each boot stage and
/// the VMM stamps it with the monotonic clock, so boot time is measured from outside the guest.
public final class BootMilestoneDevice: BusDevice {
    public static let port: UInt64 = 0x80

    public struct Milestone: Equatable, Sendable {
        public let code: UInt8
        public let nanoseconds: UInt64
    }

    public private(set) var milestones: [Milestone] = []

    public init() {
        milestones.reserveCapacity(16)
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.storeLittleEndian(UInt64(milestones.last?.code ?? 0))
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        // A guest spinning on port 0x80 (the classic I/O delay) must not grow this forever.
        guard milestones.count < 256 else { return }
        milestones.append(
            Milestone(code: UInt8(truncatingIfNeeded: data.littleEndianValue), nanoseconds: MonotonicClock.nanoseconds()))
    }
}
