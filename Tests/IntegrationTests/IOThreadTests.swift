import Foundation
import Machine
import Synchronization
import Testing

@testable import KVM

/// The KVM engine's I/O thread beyond doorbells: a watched descriptor (a TAP) read on the
/// thread, and devices' queues polled between events with their doorbells off. Needs no
/// /dev/kvm: watches and polling use only epoll.
@Suite struct IOThreadTests {
    /// A device whose "queues" are a flag the test raises, recording what the thread told it.
    final class RecordingPoller: QueuePoller, @unchecked Sendable {
        struct State {
            var polls = 0
            var doorbellsOn = true
            var turnedOff = 0
            var waitingWork = false
            var workTaken = 0
            /// The driver makes work available just as the thread turns the doorbells back on.
            var workAsDoorbellsGoOn = false
        }
        let state = Mutex(State())

        func pollQueues() -> Bool {
            state.withLock { state in
                state.polls += 1
                guard state.waitingWork else { return false }
                state.waitingWork = false
                state.workTaken += 1
                return true
            }
        }

        func setDoorbells(_ enabled: Bool) -> Bool {
            state.withLock { state in
                if !enabled && state.doorbellsOn { state.turnedOff += 1 }
                state.doorbellsOn = enabled
                if enabled && state.workAsDoorbellsGoOn {
                    state.workAsDoorbellsGoOn = false
                    state.waitingWork = true
                }
                return enabled && state.waitingWork
            }
        }
    }

    /// Waits (up to 10 s, however slow the host) for `condition`, doing `step` between looks.
    func eventually(_ condition: () -> Bool, step: () -> Void = { usleep(100) }) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while !condition() {
            if Date() > deadline { return false }
            step()
        }
        return true
    }

    @Test func aWatchedDescriptorIsReadOnTheThreadAndQueuesArePolledWithDoorbellsOff() throws {
        var ends: [Int32] = [0, 0]
        try #require(pipe(&ends) == 0)
        _ = fcntl(ends[0], F_SETFL, O_NONBLOCK)
        let thread = try #require(KVMIOThread(vmFileDescriptor: -1, pollLimitNanoseconds: 1_000_000))
        defer {
            thread.shutdown()
            close(ends[0])
            close(ends[1])
        }
        let reads = Atomic<Int>(0)
        let readEnd = ends[0]
        let watch = try #require(
            thread.watch(descriptor: readEnd) {
                var byte: UInt8 = 0
                while read(readEnd, &byte, 1) == 1 { reads.add(1, ordering: .relaxed) }
            })
        let poller = RecordingPoller()
        let polling = try #require(thread.poll(poller))
        defer { polling.cancel() }
        var byte: UInt8 = 1
        func ring() { _ = write(ends[1], &byte, 1) }

        // Events soon after one another open the thread's polling window; it then turns the
        // device's doorbells off and looks at its queues itself.
        #expect(
            eventually(
                { poller.state.withLock { $0.turnedOff > 0 && $0.polls > 0 } },
                step: {
                    ring(); usleep(50)
                }),
            "\(poller.state.withLock { $0 })")
        #expect(reads.load(ordering: .relaxed) > 0, "the descriptor was read on the I/O thread")

        // Work the driver leaves without ringing while the thread polls is taken by a poll.
        poller.state.withLock { $0.waitingWork = true }
        #expect(
            eventually(
                { poller.state.withLock { $0.workTaken == 1 } },
                step: {
                    ring(); usleep(50)
                }))
        // Work made available as the window closes (the driver still saw the doorbells off) is
        // taken before the thread sleeps, without a ring; then the doorbells stay on. (One event
        // opens a window again: it shrinks by halves, from up to a millisecond.)
        poller.state.withLock { $0.workAsDoorbellsGoOn = true }
        ring()
        #expect(eventually { poller.state.withLock { $0.workTaken == 2 && $0.doorbellsOn } }, "\(poller.state.withLock { $0 })")

        // A paused watch is not called (the backend's queue is full) until it is resumed.
        watch.pause()
        let before = reads.load(ordering: .relaxed)
        ring()
        usleep(20_000)
        #expect(reads.load(ordering: .relaxed) == before)
        watch.resume()
        #expect(eventually { reads.load(ordering: .relaxed) > before })
        watch.cancel()
    }
}
