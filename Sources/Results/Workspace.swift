import Foundation

/// Where hvbench finds its own files: the package root holding `Workloads/` (guest sources,
/// suites), and the artifact cache. Found from $HVBENCH_ROOT, the working directory, or the
/// executable's location, so `swift run hvbench` and `.build/release/hvbench` both work.
public struct Workspace: Sendable {
    public let root: URL

    public var workloads: URL { root.appendingPathComponent("Workloads") }
    public var guestSources: URL { workloads.appendingPathComponent("guest") }
    public var suites: URL { workloads.appendingPathComponent("suites") }
    public var results: URL { root.appendingPathComponent("Results") }
    /// Built guests and native runners, keyed by source hash (inside .build/, never committed).
    public var artifactCache: URL {
        if let custom = ProcessInfo.processInfo.environment["HVBENCH_CACHE"] { return URL(fileURLWithPath: custom) }
        return root.appendingPathComponent(".build/hvbench-artifacts")
    }

    public init(root: URL) { self.root = root }

    public struct NotFound: Error, CustomStringConvertible {
        public let description =
            "cannot find hvbench's Workloads/guest folder: run hvbench from its repository or set HVBENCH_ROOT to it"
    }

    public static func locate() throws -> Workspace {
        var candidates: [URL] = []
        let environment = ProcessInfo.processInfo.environment
        if let root = environment["HVBENCH_ROOT"] { candidates.append(URL(fileURLWithPath: root)) }
        candidates.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent())
        for start in candidates {
            var directory = start.standardizedFileURL
            for _ in 0..<8 {
                let marker = directory.appendingPathComponent("Workloads/guest/common/bench.c")
                if FileManager.default.fileExists(atPath: marker.path) { return Workspace(root: directory) }
                let parent = directory.deletingLastPathComponent()
                if parent.path == directory.path { break }
                directory = parent
            }
        }
        throw NotFound()
    }
}

/// FNV-1a, 64-bit: the cache key of a build and the identity of a guest image in results. It is
/// an identity check (did the guest change between two runs?), not a security property.
public struct FNV1a64: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    public init() {}
    public mutating func add(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            value ^= UInt64(byte)
            value &*= 0x0000_0100_0000_01B3
        }
    }
    public mutating func add(_ text: String) { add(Array(text.utf8) + [0]) }
    public var hex: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// Writes a file so that readers see either the old or the new content, never a partial one.
public func writeAtomically(_ data: Data, to url: URL) throws {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try data.write(to: url, options: .atomic)
}
