import Foundation

/// A short command run to completion from any context, async or a signal handler's queue:
/// posix_spawn and waitpid, no run loop (Foundation's `Process.waitUntilExit` can wait forever
/// on a cooperative thread). Standard input and error are /dev/null; standard output is
/// captured, or /dev/null, so that a process the command leaves behind (a container) holds no
/// pipe of ours.
enum QuickCommand {
    /// Runs `command` (an absolute path and its arguments); returns its exit status (nil if it
    /// could not start or was killed) and, if asked, what it printed.
    @discardableResult
    static func run(_ command: [String], captureOutput: Bool = false) -> (status: Int32?, output: String) {
        guard let executable = command.first else { return (nil, "") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var pipeEnds: [Int32] = [-1, -1]
        if captureOutput {
            guard pipe(&pipeEnds) == 0 else { return (nil, "") }
            // Only the child's standard output may stay open across exec, not these ends.
            for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
            posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let arguments = command.map { strdup($0) } + [nil]
        defer { arguments.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, arguments, environ)
        if captureOutput { close(pipeEnds[1]) }
        var output = Data()
        if captureOutput {
            defer { close(pipeEnds[0]) }
            if spawned == 0 {
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let count = read(pipeEnds[0], &buffer, buffer.count)
                    if count > 0 {
                        output.append(contentsOf: buffer[0..<count])
                    } else if count == 0 || errno != EINTR {
                        break
                    }
                }
            }
        }
        guard spawned == 0 else { return (nil, "") }
        let status = waitForExit(pid)
        let exited = (status & 0x7f) == 0
        return (exited ? (status >> 8) & 0xff : nil, String(decoding: output, as: UTF8.self))
    }

    /// Starts `command` with standard input on /dev/null and its output (standard output and
    /// error) in the file `output`, or on /dev/null; its PID, or nil.
    static func start(_ command: [String], output: String? = nil) -> pid_t? {
        guard let executable = command.first else { return nil }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let arguments = command.map { strdup($0) } + [nil]
        defer { arguments.forEach { free($0) } }
        var pid: pid_t = 0
        return posix_spawn(&pid, executable, &actions, nil, arguments, environ) == 0 ? pid : nil
    }

    /// Waits for child `pid` and returns its raw wait status.
    static func waitForExit(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }
}
