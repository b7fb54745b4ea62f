import Foundation

/// A short command run to completion from any context, async or a signal handler's queue:
/// posix_spawn and waitpid, no run loop (Foundation's `Process.waitUntilExit` can wait forever
/// on a cooperative thread). Standard input is /dev/null; standard output and error go to
/// /dev/null, a file, or (standard output only) a pipe that `run` reads, so that a process the
/// command leaves behind (a container) holds no pipe of ours.
enum QuickCommand {
    /// Runs `command` (an absolute path and its arguments); returns its exit status (nil if it
    /// could not start or was killed) and, if asked, what it printed.
    @discardableResult
    static func run(_ command: [String], captureOutput: Bool = false) -> (status: Int32?, output: String) {
        var pipeEnds: [Int32] = [-1, -1]
        if captureOutput {
            guard pipe(&pipeEnds) == 0 else { return (nil, "") }
            // Only the child's standard output may stay open across exec, not these ends.
            for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        }
        let pid = spawn(command, output: captureOutput ? .descriptor(pipeEnds[1]) : .file("/dev/null"))
        var output = Data()
        if captureOutput {
            close(pipeEnds[1])
            defer { close(pipeEnds[0]) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            while pid != nil {
                let count = read(pipeEnds[0], &buffer, buffer.count)
                if count > 0 {
                    output.append(contentsOf: buffer[0..<count])
                } else if count == 0 || errno != EINTR {
                    break
                }
            }
        }
        guard let pid else { return (nil, "") }
        let status = waitForExit(pid)
        let exited = (status & 0x7f) == 0
        return (exited ? (status >> 8) & 0xff : nil, String(decoding: output, as: UTF8.self))
    }

    /// Starts `command` with its output (standard output and error) in the file `output`, or on
    /// /dev/null; its PID, or nil.
    static func start(_ command: [String], output: String? = nil) -> pid_t? {
        spawn(command, output: .file(output ?? "/dev/null"))
    }

    /// Waits for child `pid` and returns its raw wait status.
    static func waitForExit(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }

    private enum Output {
        /// A file (created or truncated) taking standard output and error.
        case file(String)
        /// A descriptor taking standard output; standard error goes to /dev/null.
        case descriptor(Int32)
    }

    private static func spawn(_ command: [String], output: Output) -> pid_t? {
        guard let executable = command.first else { return nil }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        switch output {
        case .file(let path):
            posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        case .descriptor(let descriptor):
            posix_spawn_file_actions_adddup2(&actions, descriptor, 1)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        let arguments = command.map { strdup($0) } + [nil]
        defer { arguments.forEach { free($0) } }
        var pid: pid_t = 0
        return posix_spawn(&pid, executable, &actions, nil, arguments, environ) == 0 ? pid : nil
    }
}
