import Foundation
import Synchronization

/// A NIC's link into the host kernel: frames from the guest are written to a TAP device in
/// hvbench's network namespace, and the frames the kernel sends back are queued for the device:
/// read by the VM's I/O thread where the device is served by one (the TAP polled with the
/// doorbells, so a reply that arrives while the thread polls costs no wake-up), else by a reader
/// thread of the backend's own that tells the device. The queue is bounded: while it is full
/// nothing is read, so the TAP's own queue backs up and a blocking sender in the kernel waits, as
/// it would for a NIC whose ring is full.
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
    private let readerStarted = Atomic<Bool>(false)
    /// The I/O thread's watch on the TAP, and whether it is paused because the queue is full
    /// (an atomic, so the device taking a frame checks it without the lock).
    private let ioThreadWatch = Mutex<(any DescriptorWatch)?>(nil)
    private let watchPaused = Atomic<Bool>(false)
    /// Frames from the guest, frames the kernel's queue refused, and frames to the guest.
    public let framesFromGuest = Atomic<Int>(0)
    public let framesRefused = Atomic<Int>(0)
    public let framesToGuest = Atomic<Int>(0)

    public init(tap: TAPDevice) {
        self.tap = tap
    }

    /// Stops reading: the reader thread (within its poll interval) or the I/O thread's watch.
    /// Idempotent; the owner calls it when the VM has ended.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        ioThreadWatch.withLock { $0 }?.cancel()
        if readerStarted.load(ordering: .acquiring) { finished.wait() }
    }

    /// Reads on `router`'s I/O thread instead of a thread of its own; `arrived` runs there after
    /// each burst is queued.
    public func receive(on router: any DoorbellRouter, _ arrived: @escaping @Sendable () -> Void) -> Bool {
        guard !readerStarted.load(ordering: .acquiring),
            let watch = router.watch(descriptor: tap.descriptor, { [weak self] in self?.readBurst(arrived) })
        else { return false }
        ioThreadWatch.withLock { $0 = watch }
        return true
    }

    /// On the I/O thread: what the kernel has queued, up to a batch and the queue's room; a full
    /// queue pauses the watch until the device has taken frames.
    private func readBurst(_ arrived: @Sendable () -> Void) {
        let room = min(Self.readBatch, queue.withLock { Self.queueLimit - $0.count })
        var burst: [[UInt8]] = []
        while burst.count < room, let frame = try? tap.receive(timeout: 0) { burst.append(frame) }
        let full = queue.withLock { queue in
            queue.append(contentsOf: burst)
            return queue.count >= Self.queueLimit
        }
        if full {
            ioThreadWatch.withLock { watch in
                watchPaused.store(true, ordering: .releasing)
                watch?.pause()
            }
        }
        if !burst.isEmpty { arrived() }
    }

    /// The device took a frame: a paused watch reads again once half the queue is free.
    private func resumeIfPaused(queued: Int) {
        guard queued <= Self.queueLimit / 2, watchPaused.load(ordering: .acquiring) else { return }
        ioThreadWatch.withLock { watch in
            guard watchPaused.exchange(false, ordering: .acquiringAndReleasing) else { return }
            watch?.resume()
        }
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
        let taken = queue.withLock { queue -> (length: Int, left: Int)? in
            guard let frame = queue.first, frame.count <= buffer.count else { return nil }
            queue.removeFirst()
            buffer.copyBytes(from: frame)
            framesToGuest.add(1, ordering: .relaxed)
            return (frame.count, queue.count)
        }
        if let taken { resumeIfPaused(queued: taken.left) }
        return taken?.length
    }

    /// Reading on a thread of the backend's own (a device not served by an I/O thread).
    public func onArrival(_ arrived: @escaping @Sendable () -> Void) {
        arrival.withLock { $0 = arrived }
        guard ioThreadWatch.withLock({ $0 == nil }), !readerStarted.exchange(true, ordering: .acquiringAndReleasing)
        else { return }
        let thread = Thread { [self] in readFrames() }
        thread.name = "hvbench-tap-reader"
        thread.start()
    }
}
