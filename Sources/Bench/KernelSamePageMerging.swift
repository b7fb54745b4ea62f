import Foundation

/// The host kernel's same-page merging (KSM, `/sys/kernel/mm/ksm`): what `mem.page-sharing`
/// turns on for its measurement and reads as it merges. The knobs are the host's, so `start`
/// keeps their values and `restore` puts them back, whatever the measurement did.
struct KernelSamePageMerging {
    struct Unavailable: Error, CustomStringConvertible {
        let description: String
    }

    static let directory = "/sys/kernel/mm/ksm"
    /// Pages ksmd scans per wake-up during a measurement (the kernel's default is 100): with
    /// 20 ms between wake-ups, 50,000 pages (195 MiB) a second, so a run's VMs merge in seconds.
    static let pagesToScan = 1000
    static let sleepMilliseconds = 20

    private let saved: [String: String]

    /// Turns KSM on with the measurement's scan rate; refused where the host has no KSM or
    /// this process may not change it.
    static func start() throws -> KernelSamePageMerging {
        var saved: [String: String] = [:]
        for knob in ["run", "pages_to_scan", "sleep_millisecs"] {
            guard let value = read(knob) else { throw Unavailable(description: "\(directory)/\(knob) cannot be read") }
            saved[knob] = value
        }
        let merging = KernelSamePageMerging(saved: saved)
        for (knob, value) in [("pages_to_scan", pagesToScan), ("sleep_millisecs", sleepMilliseconds), ("run", 1)] {
            if let problem = write(knob, String(value)) {
                merging.restore()
                throw Unavailable(description: problem)
            }
        }
        return merging
    }

    /// Waits (up to two seconds) for ksmd to finish a full scan: the pages it counts as shared
    /// then no longer include those of VMs that ended while it was stopped, so a count taken
    /// after this is a true baseline.
    func settle() async {
        let scans = fullScans ?? 0
        for _ in 0..<100 where (fullScans ?? 0) <= scans { try? await Task.sleep(for: .milliseconds(20)) }
    }

    /// Stops ksmd and keeps what it merged (run=0), so the copy-on-write breaks that follow are
    /// timed without it scanning beside them.
    func stopScanning() { _ = Self.write("run", "0") }

    /// Puts the knobs back as they were (run last, so ksmd stops with its old rate in place).
    func restore() {
        for knob in ["pages_to_scan", "sleep_millisecs", "run"] {
            if let value = saved[knob] { _ = Self.write(knob, value) }
        }
    }

    /// How many more sites share a merged page: the host memory saved, in pages.
    var pagesSharing: Int? { Self.read("pages_sharing").flatMap { Int($0) } }
    /// Completed passes over all mergeable memory.
    var fullScans: Int? { Self.read("full_scans").flatMap { Int($0) } }

    var settings: String { "ksm pages_to_scan=\(Self.pagesToScan) sleep_millisecs=\(Self.sleepMilliseconds)" }

    private static func read(_ knob: String) -> String? {
        (try? String(contentsOfFile: "\(directory)/\(knob)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Nil, or why the knob could not be written.
    private static func write(_ knob: String, _ value: String) -> String? {
        writeKernelSetting("\(directory)/\(knob)", value)
    }
}

/// Writes `value` to a kernel setting file (sysfs, cgroupfs) in one write; nil, or why not.
func writeKernelSetting(_ path: String, _ value: String) -> String? {
    let descriptor = open(path, O_WRONLY)
    guard descriptor >= 0 else { return "cannot open \(path) for writing: \(String(cString: strerror(errno)))" }
    defer { close(descriptor) }
    let bytes = Array(value.utf8)
    guard Foundation.write(descriptor, bytes, bytes.count) == bytes.count else {
        return "cannot write \(value) to \(path): \(String(cString: strerror(errno)))"
    }
    return nil
}
