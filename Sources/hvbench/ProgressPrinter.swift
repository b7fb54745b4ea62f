import Bench
import Foundation
import Results
import Synchronization

/// Shows progress on stderr. On a terminal: one line rewritten in place with the current
/// system/benchmark, repetitions done and an ETA. Otherwise (CI logs): a plain line when each
/// benchmark starts and ends. Events arrive from the runner and from output readers, so the
/// state lives behind one mutex.
final class ProgressPrinter: Sendable {
    private struct State {
        var current = ""
        var index = 0
        var total = 0
        var samples = 0
        var expectedSamples = 0
        var finishedWallSeconds: [Double] = []
        var lineIsOpen = false
    }

    private let state = Mutex(State())
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private let started = Date()

    private static func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    private static func closeLine(_ state: inout State) {
        if state.lineIsOpen {
            write("\r\u{1B}[2K")
            state.lineIsOpen = false
        }
    }

    func note(_ text: String) {
        state.withLock { state in
            Self.closeLine(&state)
            Self.write("hvbench: \(text)\n")
        }
    }

    func finish() {
        state.withLock { Self.closeLine(&$0) }
    }

    private static func clock(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded())
        return String(format: "%d:%02d", whole / 60, whole % 60)
    }

    /// Remaining time from the average wall time of finished benchmarks.
    private static func eta(_ state: State) -> String {
        guard !state.finishedWallSeconds.isEmpty else { return "ETA -" }
        let average = state.finishedWallSeconds.reduce(0, +) / Double(state.finishedWallSeconds.count)
        return "ETA " + clock(average * Double(state.total - state.index + 1))
    }

    private func redraw(_ state: inout State) {
        let elapsed = Self.clock(Date().timeIntervalSince(started))
        Self.write(
            "\r\u{1B}[2K[\(state.index)/\(state.total)] \(state.current)  rep \(state.samples)/\(state.expectedSamples)  elapsed \(elapsed)  \(Self.eta(state))"
        )
        state.lineIsOpen = true
    }

    func handle(_ event: ProgressEvent) {
        state.withLock { state in
            switch event {
            case .starting(let system, let benchmark, let index, let total, let repetitions):
                state.current = "\(system) \(benchmark)"
                state.index = index
                state.total = total
                state.samples = 0
                state.expectedSamples = repetitions
                if isTerminal { redraw(&state) } else { Self.write("hvbench: [\(index)/\(total)] \(state.current) ...\n") }
            case .sample:
                state.samples += 1
                if isTerminal { redraw(&state) }
            case .finished(let result):
                state.finishedWallSeconds.append(result.wallSeconds ?? 0)
                let seconds = String(format: "%.1f s", result.wallSeconds ?? 0)
                let detail = result.status == .ok ? "" : ": \(result.reason ?? "")"
                if isTerminal {
                    Self.closeLine(&state)
                    if result.status != .ok { Self.write("hvbench: \(state.current): \(result.status.rawValue)\(detail)\n") }
                } else {
                    Self.write("hvbench:     \(result.status.rawValue) (\(seconds))\(detail)\n")
                }
            case .notice(let text):
                Self.closeLine(&state)
                Self.write("hvbench: \(text)\n")
            }
        }
    }
}
