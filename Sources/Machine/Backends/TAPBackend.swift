import Foundation
import Synchronization

/// A NIC's link into the host kernel: frames from the guest are written to a TAP device in
/// hvbench's network namespace, and a reader thread queues the frames the kernel sends back
/// and tells the device, which takes them on its own thread. The queue is bounded: while it is
/// full the reader stops reading, so the TAP's own queue backs up and a blocking sender in the
/// kernel waits, as it would for a NIC whose ring is full.
public final class TAPBackend: NetworkBackend, @unchecked Sendable {
    public let tap: TAPDevice
    /// Frames waiting for the guest, at most `queueLimit`.
    private let queue = Mutex<[[UInt8]]>([])
    public static let queueLimit = 1024
    /// Frames read from the TAP before the device is told.
    static let readBatch = 64
    private let arrival = Mutex<(@Sendable () -> Void)?>(nil)
    /// Set when the device was told frames wait, cleared when it finds the queue empty: frames
    /// that arrive while it is still taking earlier ones call it again, so none wait unseen.
    private let arrivalPending = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    /// Frames from the guest, frames the kernel's queue refused, and frames to the guest.
    public let framesFromGuest = Atomic<Int>(0)
    public let framesRefused = Atomic<Int>(0)
    public let framesToGuest = Atomic<Int>(0)

    public init(tap: TAPDevice) {
        self.tap = tap
        let thread = Thread { [self] in readFrames() }
        thread.name = "hvbench-tap-reader"
        thread.start()
    }

    /// Stops the reader thread (within its poll interval). Idempotent; the owner calls it when
    /// the VM has ended.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        finished.wait()
    }

    private func readFrames() {
        defer { finished.signal() }
        while !stopping.load(ordering: .acquiring) {
            if queue.withLock({ $0.count >= Self.queueLimit }) {
                arrival.withLock { $0 }?()  // the device may have missed the last call
                usleep(1000)
                continue
            }
            guard let frame = try? tap.receive(timeout: 0.05) else { continue }
            // What else the kernel has queued comes along (up to a batch), so the device is
            // called once per burst rather than once per frame.
            var burst = [frame]
            while burst.count < Self.readBatch, let next = try? tap.receive(timeout: 0) { burst.append(next) }
            queue.withLock { $0.append(contentsOf: burst) }
            if !arrivalPending.exchange(true, ordering: .acquiringAndReleasing) { arrival.withLock { $0 }?() }
        }
    }

    public func received(_ frame: UnsafeRawBufferPointer) {
        framesFromGuest.add(1, ordering: .relaxed)
        // A full kernel queue drops the frame, as a real link would; the peer's sequence check
        // then reports it missing.
        if (try? tap.send(frame)) != true { framesRefused.add(1, ordering: .relaxed) }
    }

    public var hasFrameForGuest: Bool {
        queue.withLock { queue in
            if queue.isEmpty { arrivalPending.store(false, ordering: .releasing) }
            return !queue.isEmpty
        }
    }

    public func frameForGuest(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        queue.withLock { queue in
            guard let frame = queue.first, frame.count <= buffer.count else { return nil }
            queue.removeFirst()
            buffer.copyBytes(from: frame)
            framesToGuest.add(1, ordering: .relaxed)
            return frame.count
        }
    }

    public func onArrival(_ arrived: @escaping @Sendable () -> Void) { arrival.withLock { $0 = arrived } }
}
