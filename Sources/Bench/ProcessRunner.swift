import Foundation
import Machine
import Results
import Subprocess
import SystemPackage

#if canImport(Glibc)
    import Glibc
#endif

/// Runs child processes (the compiler, the native runner, QEMU) through swift-subprocess, with a
/// time limit after which the child is killed.
public enum ProcessRunner {
    public struct Output: Sendable {
        public let exitCode: Int32?
        public let signal: Int32?
        public let standardOutput: [String]
        public let standardError: String
        public let timedOut: Bool
        /// Ended by `run(stop:)`'s request (whatever status the child then chose).
        public var stoppedOnRequest = false

        public var succeeded: Bool { exitCode == 0 && !timedOut }
        public var statusDescription: String {
            if timedOut { return "killed after the time limit" }
            if let signal { return "killed by signal \(signal)" }
            return "exit status \(exitCode ?? -1)"
        }
    }

    public struct LaunchError: Error, CustomStringConvertible {
        public let description: String
    }

    /// - Parameters:
    ///   - stop: ends the child early (SIGTERM) once requested: a process that serves another
    ///     until that one has finished.
    ///   - onLine: called with each standard-output line as it arrives.
    public static func run(
        _ executable: String, _ arguments: [String], timeout: Double, stop: HostStopRequest? = nil,
        onLine: (@Sendable (String) -> Void)? = nil
    ) async throws -> Output {
        do {
            let result = try await Subprocess.run(
                .path(FilePath(executable)), arguments: Arguments(arguments), input: .none, output: .sequence,
                error: .string(limit: 1 << 20)
            ) { execution in
                let pid = execution.processIdentifier.value
                let watchdog = Task {
                    let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
                    while let stop, ContinuousClock.now < deadline {
                        if stop.isRequested {
                            kill(pid, SIGTERM)
                            return WatchdogAction.stopped
                        }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    try await Task.sleep(until: deadline)
                    kill(pid, SIGKILL)
                    return WatchdogAction.killed
                }
                var lines: [String] = []
                for try await line in execution.standardOutput.strings() {
                    lines.append(line)
                    onLine?(line)
                }
                watchdog.cancel()
                return (lines, (try? await watchdog.value) ?? WatchdogAction.none)
            }
            var exitCode: Int32?
            var signal: Int32?
            switch result.terminationStatus {
            case .exited(let code): exitCode = code
            case .signaled(let number): signal = number
            }
            var output = Output(
                exitCode: exitCode, signal: signal, standardOutput: result.closureResult.0,
                standardError: result.standardError, timedOut: result.closureResult.1 == .killed)
            output.stoppedOnRequest = result.closureResult.1 == .stopped
            return output
        } catch let error as SubprocessError {
            throw LaunchError(description: "cannot run \(executable): \(error)")
        }
    }

    private enum WatchdogAction { case none, killed, stopped }

    /// The first executable called `name` on $PATH.
    public static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
