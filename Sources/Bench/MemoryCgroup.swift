import Foundation

/// A cgroup v1 memory group of hvbench's own (`/sys/fs/cgroup/memory/hvbench-…`): processes are
/// started inside it, its limit covers memory and swap alike, and it is removed with everything
/// in it when done. Only the v1 memory controller, the one these hosts have.
final class MemoryCgroup {
    struct Unavailable: Error, CustomStringConvertible {
        let description: String
    }

    static let root = "\(CgroupLayout.root)/memory"
    let path: String

    init(name: String) throws {
        guard FileManager.default.fileExists(atPath: "\(Self.root)/memory.limit_in_bytes") else {
            throw Unavailable(description: "no cgroup v1 memory controller at \(Self.root)")
        }
        path = "\(Self.root)/\(name)"
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw Unavailable(description: "cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// The file a process writes its pid to in order to join.
    var processesFile: String { "\(path)/cgroup.procs" }

    /// Limits memory, and memory plus swap where the host accounts swap, to `bytes`.
    func limit(bytes: UInt64) throws {
        try write("memory.limit_in_bytes", String(bytes))
        if FileManager.default.fileExists(atPath: "\(path)/memory.memsw.limit_in_bytes") {
            try write("memory.memsw.limit_in_bytes", String(bytes))
        }
    }

    var usage: UInt64? { read("memory.usage_in_bytes") }
    /// Page cache charged to the group (`total_cache` of memory.stat): files its processes read
    /// first, which the kernel can drop under the limit, unlike anonymous and kernel memory.
    var cache: UInt64? {
        guard let text = try? String(contentsOfFile: "\(path)/memory.stat", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first { $0.hasPrefix("total_cache ") }.flatMap { UInt64($0.split(separator: " ")[1]) }
    }
    var peakUsage: UInt64? { read("memory.max_usage_in_bytes") }
    /// Processes the kernel's OOM killer ended in this group (`oom_kill` of memory.oom_control).
    var oomKills: Int? {
        guard let text = try? String(contentsOfFile: "\(path)/memory.oom_control", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").first { $0.hasPrefix("oom_kill ") }.flatMap { Int($0.split(separator: " ")[1]) }
    }

    /// Removes the group; its processes must have ended.
    func remove() { rmdir(path) }

    private func read(_ file: String) -> UInt64? {
        (try? String(contentsOfFile: "\(path)/\(file)", encoding: .utf8)).flatMap {
            UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    private func write(_ file: String, _ value: String) throws {
        if let problem = writeKernelSetting("\(path)/\(file)", value) { throw Unavailable(description: problem) }
    }
}

/// One VM in a process of its own (`hvbench boot --balloon-fifo`), started inside a memory
/// cgroup (a shell writes its pid to the group before it becomes hvbench, so everything the
/// process allocates is charged there), its balloon driven through the FIFO.
final class CgroupVM {
    let pid: pid_t
    private let output: String
    private let fifo: String
    private var exitStatus: Int32?

    init(command: [String], in group: MemoryCgroup, scratch: URL, index: Int) throws {
        fifo = scratch.appendingPathComponent("balloon-\(index)").path
        output = scratch.appendingPathComponent("vm-\(index).log").path
        guard mkfifo(fifo, 0o600) == 0 else {
            throw MemoryCgroup.Unavailable(description: "cannot make the FIFO \(fifo): \(String(cString: strerror(errno)))")
        }
        let joined =
            ["/bin/sh", "-c", "echo $$ > \"$0\" && exec \"$@\"", group.processesFile] + command + ["--balloon-fifo", fifo]
        guard let pid = QuickCommand.start(joined, output: output) else {
            throw MemoryCgroup.Unavailable(description: "cannot start \(command[0]) for VM \(index + 1)")
        }
        self.pid = pid
    }

    var console: String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }
    var isReady: Bool { console.contains(BalloonReclaimMeasurement.readyLine) }

    /// Whether the process still runs (reaped once it has ended).
    var isAlive: Bool {
        guard exitStatus == nil else { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { exitStatus = status }
        return exitStatus == nil
    }

    /// Killed by a signal (the OOM killer's SIGKILL), rather than ended on its own.
    var wasKilled: Bool { exitStatus.map { $0 & 0x7F != 0 } ?? false }

    func request(pages: UInt32) {
        let descriptor = open(fifo, O_WRONLY | O_NONBLOCK)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        let line = Array("pages \(pages)\n".utf8)
        _ = write(descriptor, line, line.count)
    }

    var balloon: (actual: UInt32, taken: Int)? { BalloonFIFO.latestStatus(in: console) }

    func stop() {
        if isAlive {
            kill(pid, SIGKILL)
            exitStatus = QuickCommand.waitForExit(pid)
        }
        unlink(fifo)
    }
}
