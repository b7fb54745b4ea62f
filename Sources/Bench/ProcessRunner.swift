import Foundation
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

    /// - Parameter onLine: called with each standard-output line as it arrives.
    public static func run(
        _ executable: String, _ arguments: [String], timeout: Double, onLine: (@Sendable (String) -> Void)? = nil
    ) async throws -> Output {
        do {
            let result = try await Subprocess.run(
                .path(FilePath(executable)), arguments: Arguments(arguments), input: .none, output: .sequence,
                error: .string(limit: 1 << 20)
            ) { execution in
                let pid = execution.processIdentifier.value
                let watchdog = Task {
                    try await Task.sleep(for: .milliseconds(Int(timeout * 1000)))
                    kill(pid, SIGKILL)
                    return true
                }
                var lines: [String] = []
                for try await line in execution.standardOutput.strings() {
                    lines.append(line)
                    onLine?(line)
                }
                watchdog.cancel()
                let timedOut = (try? await watchdog.value) ?? false
                return (lines, timedOut)
            }
            var exitCode: Int32?
            var signal: Int32?
            switch result.terminationStatus {
            case .exited(let code): exitCode = code
            case .signaled(let number): signal = number
            }
            return Output(
                exitCode: exitCode, signal: signal, standardOutput: result.closureResult.0,
                standardError: result.standardError, timedOut: result.closureResult.1)
        } catch let error as SubprocessError {
            throw LaunchError(description: "cannot run \(executable): \(error)")
        }
    }

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
