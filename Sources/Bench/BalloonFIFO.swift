import Foundation
import Machine

#if canImport(Glibc)
    import Glibc
#endif

/// How a VM in a process of its own (`hvbench boot --balloon-fifo PATH`) takes balloon targets
/// from the process that started it: that process writes lines `pages N` into a FIFO; the VM's
/// process asks its balloon for N pages and prints `hvbench-boot: balloon actual=A taken=T`
/// whenever what the balloon holds changes (the driver's `actual`, the pages the device took).
public enum BalloonFIFO {
    public static let statusPrefix = "hvbench-boot: balloon actual="

    /// Serves `path` for `control` on a thread of its own until the process ends. A line that is
    /// not `pages N` with N a 32-bit count is ignored with a message on standard error.
    public static func serve(_ path: String, _ control: BalloonControl) throws {
        // O_RDWR: opening never waits for a writer, and reads never see end-of-file.
        let descriptor = open(path, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw BalloonFIFOError("cannot open the balloon FIFO \(path): \(String(cString: strerror(errno)))")
        }
        try HostThread.start(name: "hvb-balloon-fifo") {
            var pending: [UInt8] = []
            var reported: (actual: UInt32, ballooned: Int)?
            var chunk = [UInt8](repeating: 0, count: 256)
            while true {
                var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                if poll(&poller, 1, 1) > 0 {
                    let count = read(descriptor, &chunk, chunk.count)
                    if count > 0 { pending += chunk[..<count] }
                    while let newline = pending.firstIndex(of: 0x0A) {
                        let line = String(decoding: pending[..<newline], as: UTF8.self)
                        pending.removeSubrange(...newline)
                        if let pages = target(in: line) {
                            control.request(pages: pages)
                        } else {
                            FileHandle.standardError.write(Data("hvbench-boot: ignored balloon request '\(line)'\n".utf8))
                        }
                    }
                    if pending.count > 4096 { pending.removeAll() }
                }
                if let state = control.state, reported.map({ $0 != state }) ?? true {
                    reported = state
                    FileHandle.standardError.write(
                        Data("\(statusPrefix)\(state.actual) taken=\(state.ballooned)\n".utf8))
                }
            }
        }
    }

    /// N of a `pages N` line.
    static func target(in line: String) -> UInt32? {
        let words = line.split(separator: " ")
        guard words.count == 2, words[0] == "pages" else { return nil }
        return UInt32(words[1])
    }

    /// The latest status in a VM process's output: what the balloon held (actual, taken).
    public static func latestStatus(in output: String) -> (actual: UInt32, taken: Int)? {
        for line in output.split(separator: "\n").reversed() where line.hasPrefix(statusPrefix) {
            let words = line.dropFirst(statusPrefix.count).split(separator: " ")
            guard let actual = words.first.flatMap({ UInt32($0) }),
                let taken = words.dropFirst().first.flatMap({ Int($0.dropFirst("taken=".count)) })
            else { continue }
            return (actual, taken)
        }
        return nil
    }
}

public struct BalloonFIFOError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
