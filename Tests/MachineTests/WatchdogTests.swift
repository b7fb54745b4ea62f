import Foundation
import Synchronization
import Testing

@testable import Machine

/// An engine that ignores stop requests until released: a vCPU stuck where the watchdog's
/// signal cannot reach it.
final class StuckEngine: CPUEngine, @unchecked Sendable {
    let engineName = "stuck"
    let released = Atomic<Bool>(false)
    let stopRequests = Atomic<Int>(0)
    func run() throws -> VMExit {
        while !released.load(ordering: .acquiring) { usleep(1000) }
        return .interrupted
    }
    func requestStop() { stopRequests.add(1, ordering: .relaxed) }
}

@Suite(.serialized) struct WatchdogTests {
    /// The VM must not return (and free guest memory) while the vCPU thread still runs: the
    /// handler is told why (by default it ends the process), and the run fails with that reason.
    @Test func aVCPUThatCannotBeStoppedIsNeverLeftRunning() throws {
        let engine = StuckEngine()
        let told = Mutex<String?>(nil)
        let previous = VirtualMachine.unstoppableVCPUHandler.withLock { $0 }
        VirtualMachine.unstoppableVCPUHandler.withLock { handler in
            handler = { reason in
                told.withLock { $0 = reason }
                engine.released.store(true, ordering: .releasing)  // what exit(70) would do: the thread ends
            }
        }
        defer { VirtualMachine.unstoppableVCPUHandler.withLock { $0 = previous } }
        let machine = try VirtualMachine(memory: try GuestMemory(size: 1 << 20), engine: engine, startedAt: 0) { _ in }
        let outcome = machine.run(timeout: 1)
        let reason = try #require(told.withLock { $0 })
        #expect(reason.contains("did not stop"))
        #expect(outcome.ending == .failed(reason))
        #expect(engine.stopRequests.load(ordering: .relaxed) >= 100, "the watchdog kept asking before giving up")
    }
}
