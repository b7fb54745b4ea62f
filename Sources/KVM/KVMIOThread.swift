import CKVM
import Foundation
import Machine
import Synchronization

/// What one epoll token stands for: a doorbell's eventfd or a watched descriptor.
private protocol Served: AnyObject {
    func serve()
}

/// The KVM engine's I/O thread: doorbell addresses become ioeventfds (KVM_IOEVENTFD), so the
/// guest's write completes in the kernel without an exit to hvbench, and one thread waits on
/// all of them (epoll) and runs the device work. Routes can be added and cancelled while it
/// runs (a BAR moves); `shutdown()` joins it.
///
/// Before it sleeps, the thread polls its descriptors for a while (adaptive polling, as QEMU's
/// iothreads do with `poll-max-ns`): waking a sleeping thread costs microseconds that a
/// request-response exchange pays on every request. The window grows (doubling from 4 µs up to
/// the limit) while events come soon after the thread went to sleep, and shrinks (halving, to
/// none below 4 µs) while they do not, so an idle or slow guest costs no polling. It also waits
/// on descriptors devices give it (`watch`: a TAP), and while its window is open it looks at
/// the queues of the devices that asked (`poll`) with their doorbells off.
final class KVMIOThread: DoorbellRouter, @unchecked Sendable {
    final class Route: DoorbellRoute, Served, @unchecked Sendable {
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

        func serve() {
            let writes = ckvm_eventfd_take(eventFD.rawValue)
            if writes > 0 { handler(Int(min(writes, Int64(Int.max)))) }
        }

        func cancel() { owner?.remove(self) }
    }

    /// A device whose queues the thread polls (no descriptor: it is not in the epoll set).
    final class Polling: DoorbellRoute, @unchecked Sendable {
        /// Weak: the device keeps this route among its own, and drops both with its BAR.
        weak var poller: (any QueuePoller)?
        weak var owner: KVMIOThread?

        init(owner: KVMIOThread, poller: any QueuePoller) {
            self.owner = owner
            self.poller = poller
        }

        func cancel() { owner?.remove(polling: self) }
    }

    final class Watch: DescriptorWatch, Served, @unchecked Sendable {
        let token: UInt64
        let descriptor: Int32
        let epoll: Int32
        let handler: @Sendable () -> Void
        weak var owner: KVMIOThread?

        init(owner: KVMIOThread, token: UInt64, descriptor: Int32, handler: @escaping @Sendable () -> Void) {
            self.owner = owner
            self.token = token
            self.descriptor = descriptor
            self.epoll = owner.epoll.rawValue
            self.handler = handler
        }

        func serve() { handler() }
        // Not under the routes lock: the handler pauses from inside a dispatch, which holds it.
        func pause() { _ = ckvm_epoll_arm(epoll, descriptor, token, 0) }
        func resume() { _ = ckvm_epoll_arm(epoll, descriptor, token, 1) }
        func cancel() { owner?.remove(watch: self) }
    }

    private let vmFileDescriptor: Int32
    private let epoll: HostDescriptor
    private let stop: HostDescriptor
    /// Routes and watches by token; the lock also serialises handlers against `remove`, so a
    /// cancelled route's handler never runs after `cancel()` returns.
    private let routes = Mutex<[UInt64: any Served]>([:])
    private var nextToken: UInt64 = 1
    /// Devices whose queues the thread polls (guarded by the routes lock).
    private var pollers: [Polling] = []
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
        let route = register { token in
            Route(owner: self, token: token, eventFD: eventFD, address: address, length: length, handler: handler)
        }
        guard ckvm_epoll_add(epoll.rawValue, eventFD.rawValue, route.token) == 0 else {
            remove(route)
            return nil
        }
        startIfNeeded()
        return route
    }

    func watch(descriptor: Int32, _ handler: @escaping @Sendable () -> Void) -> DescriptorWatch? {
        let watch = register { token in Watch(owner: self, token: token, descriptor: descriptor, handler: handler) }
        guard ckvm_epoll_add(epoll.rawValue, descriptor, watch.token) == 0 else {
            remove(watch: watch)
            return nil
        }
        startIfNeeded()
        return watch
    }

    /// Files what `make` builds under a fresh token, under the routes lock.
    private func register<Entry: Served & Sendable>(_ make: (UInt64) -> Entry) -> Entry {
        routes.withLock { table in
            let entry = make(nextToken)
            table[nextToken] = entry
            nextToken += 1
            return entry
        }
    }

    func poll(_ poller: any QueuePoller) -> DoorbellRoute? {
        let polling = Polling(owner: self, poller: poller)
        routes.withLock { _ in pollers.append(polling) }
        return polling
    }

    private func remove(polling: Polling) {
        routes.withLock { _ in pollers.removeAll { $0 === polling } }
    }

    /// Asks every polled device `question` (under the routes lock, as handlers run): each is
    /// asked, and the answer is whether any had work.
    private func anyPolledDevice(_ question: (any QueuePoller) -> Bool) -> Bool {
        routes.withLock { _ in
            var found = false
            for polling in pollers {
                if let poller = polling.poller, question(poller) { found = true }
            }
            return found
        }
    }

    /// Polls every device's queues; whether any had work.
    private func pollQueues() -> Bool { anyPolledDevice { $0.pollQueues() } }

    /// Doorbells on or off for every polled device; turning them on, whether work came meanwhile.
    private func setDoorbells(_ enabled: Bool) -> Bool { anyPolledDevice { $0.setDoorbells(enabled) } }

    private func remove(watch: Watch) {
        routes.withLock { table in
            guard table.removeValue(forKey: watch.token) != nil else { return }
            _ = ckvm_epoll_remove(epoll.rawValue, watch.descriptor)
        }
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
        var doorbellsOff = false
        while true {
            if window > 0 {
                if !doorbellsOff {
                    _ = setDoorbells(false)
                    doorbellsOff = true
                }
                let until = MonotonicClock.nanoseconds() + window
                var token: Int64 = -1
                var queueWork = false
                repeat {
                    token = ckvm_epoll_wait_one(epoll.rawValue, 0)
                    if token == -1 { queueWork = pollQueues() }
                } while token == -1 && !queueWork && MonotonicClock.nanoseconds() < until
                if token == 0 { return }  // the stop eventfd
                if token < -1 { return }  // epoll itself failed: nothing more can be served
                if token > 0 || queueWork {
                    polled.add(1, ordering: .relaxed)
                    if token > 0 { dispatch(token) }
                    continue
                }
            }
            if doorbellsOff {
                doorbellsOff = false
                // Work the driver left without ringing while the doorbells were off.
                if setDoorbells(true) {
                    _ = pollQueues()
                    continue
                }
            }
            let sleptAt = MonotonicClock.nanoseconds()
            let token = ckvm_epoll_wait_one(epoll.rawValue, -1)
            if token == 0 { return }
            guard token > 0 else {
                if token < -1 { return }
                continue  // interrupted by a signal
            }
            // Polling a little longer would have caught this event: grow the window; else shrink.
            // (Measured before the work it brings, which can take longer than the window.)
            let slept = MonotonicClock.nanoseconds() - sleptAt
            dispatch(token)
            if slept <= pollLimitNanoseconds {
                window = min(max(window * 2, smallestWindow), pollLimitNanoseconds)
            } else {
                window /= 2
                if window < smallestWindow { window = 0 }
            }
        }
    }

    private func dispatch(_ token: Int64) {
        routes.withLock { table in table[UInt64(token)]?.serve() }
    }

    func shutdown() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        _ = ckvm_eventfd_signal(stop.rawValue)
        finished.wait()
        thread = nil
    }
}
