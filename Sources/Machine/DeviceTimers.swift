import Dispatch
import Synchronization

/// One-shot device timers on the host's monotonic clock (the e1000's interrupt throttling, and
/// whatever else a device must do later rather than in answer to a register access). Actions run
/// on the bootstrap processor's vCPU thread, between guest instructions or exits and under the
/// VM's device lock, like every other device callback of the emulated devices, so device models
/// need no locks of their own. A timer that comes due while the guest runs (or sleeps in `hlt`
/// inside KVM) wakes the engine out of `run()` the way the watchdog does, without stopping
/// anything: the VM runs the due actions and resumes the guest.
public final class DeviceTimers: @unchecked Sendable {
    public final class Timer {
        fileprivate let deadline: UInt64
        fileprivate let action: () -> Void
        fileprivate var armed = true

        fileprivate init(deadline: UInt64, action: @escaping () -> Void) {
            self.deadline = deadline
            self.action = action
        }
    }

    /// The clock deadlines are on; tests substitute their own.
    public let now: () -> UInt64
    /// Armed timers, earliest first; touched by device work only (one thread at a time).
    private var pending: [Timer] = []
    /// The earliest deadline (UInt64.max: none), for the waker and for cheap checks on exits.
    private let earliest = Atomic<UInt64>(.max)
    private let waker: DispatchSourceTimer
    private let wake = Mutex<(@Sendable () -> Void)?>(nil)
    /// Work other threads handed in (`post`), run as timers that are due now.
    private let posted = Mutex<[@Sendable () -> Void]>([])
    private let hasPosted = Atomic<Bool>(false)

    public init(now: @escaping () -> UInt64 = MonotonicClock.nanoseconds) {
        self.now = now
        waker = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "hvbench-device-timers"))
        waker.setEventHandler { [weak self] in self?.wake.withLock { $0 }?() }
        waker.activate()
    }

    deinit { waker.cancel() }

    /// What wakes the vCPU thread out of the engine when a timer comes due (the VM sets it).
    public func setWake(_ action: @escaping @Sendable () -> Void) { wake.withLock { $0 = action } }

    /// Runs `action` on the vCPU thread at `deadline` (nanoseconds on `now`) or soon after.
    @discardableResult
    public func schedule(at deadline: UInt64, _ action: @escaping () -> Void) -> Timer {
        let timer = Timer(deadline: deadline, action: action)
        let index = pending.firstIndex { $0.deadline > deadline } ?? pending.endIndex
        pending.insert(timer, at: index)
        if index == 0 { rearm() }
        return timer
    }

    public func cancel(_ timer: Timer) {
        guard timer.armed else { return }
        timer.armed = false
        pending.removeAll { $0 === timer }
        rearm()
    }

    /// Runs `action` on the vCPU thread as soon as it can, under the device lock: how a thread of
    /// a backend (a TAP's reader, when frames arrive) hands work to a device model. Any thread.
    public func post(_ action: @escaping @Sendable () -> Void) {
        posted.withLock { $0.append(action) }
        hasPosted.store(true, ordering: .releasing)
        wake.withLock { $0 }?()
    }

    /// The earliest deadline, nil when no timer is armed (0 while posted work waits). Any thread.
    public var nextDeadline: UInt64? {
        if hasPosted.load(ordering: .acquiring) { return 0 }
        let deadline = earliest.load(ordering: .acquiring)
        return deadline == .max ? nil : deadline
    }

    /// Runs every action whose deadline has passed, in deadline order (actions may schedule
    /// more); returns how many ran.
    @discardableResult
    public func runDue() -> Int {
        var ran = 0
        if hasPosted.exchange(false, ordering: .acquiringAndReleasing) {
            let work = posted.withLock { work in
                defer { work.removeAll() }
                return work
            }
            for action in work { action() }
            ran += work.count
        }
        while let first = pending.first, first.deadline <= now() {
            pending.removeFirst()
            first.armed = false
            first.action()
            ran += 1
        }
        if ran > 0 { rearm() }
        return ran
    }

    /// Drops every timer and stops the waker: after it returns no wake comes from here.
    public func shutdown() {
        for timer in pending { timer.armed = false }
        pending.removeAll()
        posted.withLock { $0.removeAll() }
        hasPosted.store(false, ordering: .releasing)
        earliest.store(.max, ordering: .releasing)
        wake.withLock { $0 = nil }
        waker.schedule(deadline: .distantFuture, leeway: .nanoseconds(0))
    }

    private func rearm() {
        let deadline = pending.first?.deadline ?? .max
        earliest.store(deadline, ordering: .releasing)
        guard deadline != .max else {
            waker.schedule(deadline: .distantFuture, leeway: .nanoseconds(0))
            return
        }
        let current = now()
        let delay = deadline > current ? deadline - current : 0
        waker.schedule(deadline: .now() + .nanoseconds(Int(min(delay, UInt64(Int.max)))), leeway: .nanoseconds(0))
    }
}
