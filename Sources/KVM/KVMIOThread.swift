import CKVM
import Foundation
import Machine
import Synchronization

/// The KVM engine's I/O thread: doorbell addresses become ioeventfds (KVM_IOEVENTFD), so the
/// guest's write completes in the kernel without an exit to hvbench, and one thread waits on
/// all of them (epoll) and runs the device work. Routes can be added and cancelled while it
/// runs (a BAR moves); `shutdown()` joins it.
///
/// Before it sleeps, the thread polls its descriptors for a while (adaptive polling, as QEMU's
/// iothreads do with `poll-max-ns`): waking a sleeping thread costs microseconds that a
/// request-response exchange pays on every request. The window grows (doubling from 4 µs up to
/// the limit) while events come soon after the thread went to sleep, and shrinks (halving, to
/// none below 4 µs) while they do not, so an idle or slow guest costs no polling.
final class KVMIOThread: DoorbellRouter, @unchecked Sendable {
    final class Route: DoorbellRoute, @unchecked Sendable {
        let token: UInt64
        let eventFD: HostDescriptor
        let address: UInt64
        let length: Int
        let handler: @Sendable (Int) -> Void
        weak var owner: KVMIOThread?

        init(
            owner: KVMIOThread, token: UInt64, eventFD: HostDescriptor, address: UInt64, length: Int,
            handler: @escaping @Sendable (Int) -> Void
        ) {
            self.owner = owner
            self.token = token
            self.eventFD = eventFD
            self.address = address
            self.length = length
            self.handler = handler
        }

        func cancel() { owner?.remove(self) }
    }

    private let vmFileDescriptor: Int32
    private let epoll: HostDescriptor
    private let stop: HostDescriptor
    /// Routes by token; the lock also serialises handlers against `remove`, so a cancelled
    /// route's handler never runs after `cancel()` returns.
    private let routes = Mutex<[UInt64: Route]>([:])
    private var nextToken: UInt64 = 1
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    private let running = Atomic<Bool>(false)
    /// The longest the thread polls before it sleeps; 0: it always sleeps at once.
    let pollLimitNanoseconds: UInt64
    /// Doorbells found while polling, which cost no wake-up.
    private let polled = Atomic<Int>(0)
    var polledEvents: Int { polled.load(ordering: .relaxed) }

    init?(vmFileDescriptor: Int32, pollLimitNanoseconds: UInt64) {
        self.pollLimitNanoseconds = pollLimitNanoseconds
        guard let epoll = HostDescriptor(taking: ckvm_epoll_create()), let stop = HostDescriptor(taking: ckvm_eventfd()),
            ckvm_epoll_add(epoll.rawValue, stop.rawValue, 0) == 0
        else { return nil }
        self.vmFileDescriptor = vmFileDescriptor
        self.epoll = epoll
        self.stop = stop
    }

    deinit {
        shutdown()
        routes.withLock { $0.removeAll() }
    }

    func route(address: UInt64, length: Int, _ handler: @escaping @Sendable (Int) -> Void) -> DoorbellRoute? {
        guard let eventFD = HostDescriptor(taking: ckvm_eventfd()) else { return nil }
        // KVM refusing leaves the doorbell an ordinary exit.
        guard ckvm_ioeventfd(vmFileDescriptor, address, UInt32(length), eventFD.rawValue, 0) == 0 else { return nil }
        let route = Route(owner: self, token: nextToken, eventFD: eventFD, address: address, length: length, handler: handler)
        nextToken += 1
        routes.withLock { $0[route.token] = route }
        guard ckvm_epoll_add(epoll.rawValue, eventFD.rawValue, route.token) == 0 else {
            remove(route)
            return nil
        }
        startIfNeeded()
        return route
    }

    private func remove(_ route: Route) {
        routes.withLock { table in
            guard table.removeValue(forKey: route.token) != nil else { return }  // cancelled before
            _ = ckvm_epoll_remove(epoll.rawValue, route.eventFD.rawValue)
            _ = ckvm_ioeventfd(vmFileDescriptor, route.address, UInt32(route.length), route.eventFD.rawValue, 1)
        }
    }

    private func startIfNeeded() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let thread = Thread { [unowned self] in
            self.serve()
            self.finished.signal()
        }
        thread.name = "hvbench-io"
        thread.stackSize = 1 << 20
        self.thread = thread
        thread.start()
    }

    private func serve() {
        let smallestWindow: UInt64 = 4_000
        var window: UInt64 = 0
        while true {
            if window > 0 {
                let until = MonotonicClock.nanoseconds() + window
                var token: Int64 = -1
                repeat {
                    token = ckvm_epoll_wait_one(epoll.rawValue, 0)
                } while token == -1 && MonotonicClock.nanoseconds() < until
                if token >= 0 {
                    if token == 0 { return }  // the stop eventfd
                    polled.add(1, ordering: .relaxed)
                    dispatch(token)
                    continue
                }
                if token < -1 { return }  // epoll itself failed: nothing more can be served
            }
            let sleptAt = MonotonicClock.nanoseconds()
            let token = ckvm_epoll_wait_one(epoll.rawValue, -1)
            if token == 0 { return }
            guard token > 0 else {
                if token < -1 { return }
                continue  // interrupted by a signal
            }
            dispatch(token)
            // Polling a little longer would have caught this event: grow the window; else shrink.
            if MonotonicClock.nanoseconds() - sleptAt <= pollLimitNanoseconds {
                window = min(max(window * 2, smallestWindow), pollLimitNanoseconds)
            } else {
                window /= 2
                if window < smallestWindow { window = 0 }
            }
        }
    }

    private func dispatch(_ token: Int64) {
        routes.withLock { table in
            guard let route = table[UInt64(token)] else { return }
            let writes = ckvm_eventfd_take(route.eventFD.rawValue)
            if writes > 0 { route.handler(Int(min(writes, Int64(Int.max)))) }
        }
    }

    func shutdown() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        _ = ckvm_eventfd_signal(stop.rawValue)
        finished.wait()
        thread = nil
    }
}
