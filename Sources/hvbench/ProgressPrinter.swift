import Bench
import Results
import Foundation

/// Shows progress on stderr. On a terminal: one line rewritten in place with the current
/// system/benchmark, repetitions done and an ETA. Otherwise (CI logs): a plain line when each
/// benchmark starts and ends.
final class ProgressPrinter: @unchecked Sendable {
    private let lock = NSLock()
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private let started = Date()
    private var current = ""
    private var index = 0
    private var total = 0
    private var samples = 0
    private var expectedSamples = 0
    private var finishedWallSeconds: [Double] = []
    private var lineIsOpen = false

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    private func closeLine() {
        if lineIsOpen {
            write("\r\u{1B}[2K")
            lineIsOpen = false
        }
    }

    func note(_ text: String) {
        lock.lock()
        defer { lock.unlock() }
        closeLine()
        write("hvbench: \(text)\n")
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        closeLine()
    }

    private static func clock(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded())
        return String(format: "%d:%02d", whole / 60, whole % 60)
    }

    /// Remaining time from the average wall time of finished benchmarks.
    private var eta: String {
        guard !finishedWallSeconds.isEmpty else { return "ETA -" }
        let average = finishedWallSeconds.reduce(0, +) / Double(finishedWallSeconds.count)
        return "ETA " + Self.clock(average * Double(total - index + 1))
    }

    private func redraw() {
        let elapsed = Self.clock(Date().timeIntervalSince(started))
        write("\r\u{1B}[2K[\(index)/\(total)] \(current)  rep \(samples)/\(expectedSamples)  elapsed \(elapsed)  \(eta)")
        lineIsOpen = true
    }

    func handle(_ event: ProgressEvent) {
        lock.lock()
        defer { lock.unlock() }
        switch event {
        case .starting(let system, let benchmark, let index, let total, let repetitions):
            current = "\(system) \(benchmark)"
            self.index = index
            self.total = total
            samples = 0
            expectedSamples = repetitions
            if isTerminal { redraw() } else { write("hvbench: [\(index)/\(total)] \(current) ...\n") }
        case .sample:
            samples += 1
            if isTerminal { redraw() }
        case .finished(let result):
            finishedWallSeconds.append(result.wallSeconds ?? 0)
            let seconds = String(format: "%.1f s", result.wallSeconds ?? 0)
            let detail = result.status == .ok ? "" : ": \(result.reason ?? "")"
            if isTerminal {
                closeLine()
                if result.status != .ok { write("hvbench: \(current): \(result.status.rawValue)\(detail)\n") }
            } else {
                write("hvbench:     \(result.status.rawValue) (\(seconds))\(detail)\n")
            }
        case .notice(let text):
            closeLine()
            write("hvbench: \(text)\n")
        }
    }
}
