import Foundation
import Machine
import Results
import Synchronization
import VMM

/// A VM the host drives while it runs (mem.page-sharing, mem.balloon-reclaim): booted on a
/// thread of its own, it says on its console when it is ready (and where its mailbox is, a word
/// of its RAM the host writes to tell it to go on); the host keeps its RAM to read and write,
/// and waits for it to end.
final class HostDrivenGuest: Sendable {
    private struct State {
        var memory: GuestMemory?
        var ready = false
        var mailbox: UInt64?
        var refills = 0
        var result: Result<VMBuilder.Boot, BenchmarkRunner.StartProblem>?
    }
    private let readyLine: String
    private let state = Mutex(State())
    private let ended = DispatchSemaphore(value: 0)
    let stop = HostStopRequest()

    /// - Parameter readyLine: how the guest's console line saying it is ready begins.
    init(readyLine: String) { self.readyLine = readyLine }

    /// Boots the guest on a thread named `thread`; `prepare` sees its RAM before it runs.
    func boot(
        _ context: MeasurementContext, _ job: GuestJob, cpu: VMBuilder.CPU, io: IOConfiguration?, by runner: BenchmarkRunner,
        thread: String, prepare: @escaping @Sendable (GuestMemory) throws -> Void = { _ in }
    ) {
        let start = Start(context: context, job: job, cpu: cpu, io: io)
        do {
            try HostThread.start(name: thread) {
                self.finish(
                    runner.bootGuest(
                        start.context, start.job, cpu: start.cpu, io: start.io, hostStop: self.stop,
                        onConsoleLine: self.console(runner),
                        prepare: { memory in
                            try prepare(memory)
                            self.keep(memory)
                        }))
            }
        } catch {
            finish(.failure(BenchmarkRunner.StartProblem(description: "\(error)")))
        }
    }

    /// Boots a guest of its own (the Linux guest) on a thread named `thread`.
    func boot(_ description: VMDescription, timeout: Double, by runner: BenchmarkRunner, thread: String) {
        let start = Description(vm: description)
        do {
            try HostThread.start(name: thread) {
                let result: Result<VMBuilder.Boot, BenchmarkRunner.StartProblem>
                do {
                    result = .success(
                        try VMBuilder.boot(
                            start.vm, timeout: timeout, onConsoleLine: self.console(runner), prepare: self.keep,
                            hostStop: self.stop))
                } catch {
                    result = .failure(BenchmarkRunner.StartProblem(description: "could not start the VM: \(error)"))
                }
                self.finish(result)
            }
        } catch {
            finish(.failure(BenchmarkRunner.StartProblem(description: "\(error)")))
        }
    }

    /// Unchecked: the description's devices are used by the VM's thread alone once it starts.
    private struct Description: @unchecked Sendable {
        let vm: VMDescription
    }

    /// What the VM's thread boots with. Unchecked: the measurement waits for the thread to end
    /// before it lets go of the engine's system or the devices' backends.
    private struct Start: @unchecked Sendable {
        let context: MeasurementContext
        let job: GuestJob
        let cpu: VMBuilder.CPU
        let io: IOConfiguration?
    }

    /// What the VM's console thread does with each line: read it here, count samples for progress.
    private func console(_ runner: BenchmarkRunner) -> (String) -> Void {
        { line in
            self.read(line)
            runner.reportSamples(line)
        }
    }

    /// Keeps the VM's RAM for residency and the mailbox while it runs.
    private func keep(_ memory: GuestMemory) { state.withLock { $0.memory = memory } }

    /// "<readyLine>mailbox=0x... ...": ready, and where the go-ahead goes (if it says); the
    /// balloon's "refilled" lines are counted.
    private func read(_ line: String) {
        if line.hasPrefix(BalloonReclaim.refilledLine) { state.withLock { $0.refills += 1 } }
        guard line.hasPrefix(readyLine) else { return }
        let mailbox = line.split(separator: " ").first { $0.hasPrefix("mailbox=0x") }
            .flatMap { UInt64($0.dropFirst("mailbox=0x".count), radix: 16) }
        state.withLock {
            $0.ready = true
            $0.mailbox = mailbox
        }
    }

    var isReady: Bool { state.withLock { $0.ready && $0.memory != nil && $0.result == nil } }
    var isReadyOrEnded: Bool { state.withLock { $0.ready || $0.result != nil } }
    var hasEnded: Bool { state.withLock { $0.result != nil } }
    /// How many times the guest said it wrote the pages its balloon gave back again.
    var refills: Int { state.withLock { $0.refills } }

    /// Waits (without holding a thread) until the guest is ready or has ended, or the limit.
    func waitUntilReadyOrEnded(until limit: Date) async {
        while !isReadyOrEnded && Date() < limit { try? await Task.sleep(for: .milliseconds(10)) }
    }

    /// Guest RAM resident on the host, in MiB (nil once the VM has ended).
    var residentMebibytes: Double? {
        state.withLock { state in
            state.memory.map { Double($0.residentBytes) / 1_048_576 }
        }
    }

    /// Writes the go-ahead into the guest's mailbox; a guest whose address lies outside its RAM
    /// is not written to, and times out.
    func release() {
        state.withLock { state in
            guard let memory = state.memory, let mailbox = state.mailbox else { return }
            try? memory.writeValue(UInt64(1), at: mailbox)
        }
    }

    private func finish(_ outcome: Result<VMBuilder.Boot, BenchmarkRunner.StartProblem>) {
        state.withLock {
            $0.result = outcome
            $0.memory = nil
        }
        ended.signal()
    }

    func waitUntilEnded() -> Result<VMBuilder.Boot, BenchmarkRunner.StartProblem> {
        ended.wait()
        ended.signal()  // a second wait returns at once
        return state.withLock { $0.result! }
    }
}
