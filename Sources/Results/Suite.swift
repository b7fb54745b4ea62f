import Foundation
import Yams

/// A suite: which benchmarks to run, with how many iterations and repetitions, and the time
/// limit for each guest. Loaded from `Workloads/suites/<name>.yaml`:
///
///     name: quick
///     description: ...
///     rounds: 3             # each round runs every (system, benchmark) once (default 1)
///     repetitions: 5        # measured repetitions per benchmark (default 5)
///     warmups: 1            # unmeasured repetitions first (default 1)
///     timeout: 120          # seconds one guest or native process may run (default 120)
///     benchmarks:
///       - id: cpu.int
///         iterations: 2000000
///         size: 33554432    # optional: working set in bytes (memory benchmarks)
///         repetitions: 3    # optional per-benchmark override
public struct Suite: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var id: String
        public var iterations: UInt64
        public var repetitions: Int
        public var warmups: Int
        public var sizeBytes: UInt64?
        public var timeoutSeconds: Double

        public init(id: String, iterations: UInt64, repetitions: Int, warmups: Int, sizeBytes: UInt64?, timeoutSeconds: Double) {
            self.id = id
            self.iterations = iterations
            self.repetitions = repetitions
            self.warmups = warmups
            self.sizeBytes = sizeBytes
            self.timeoutSeconds = timeoutSeconds
        }

        /// The timed operations one boot performs: every iteration of every warm-up and measured
        /// repetition (what a device or peer must have seen, and what exit counts are per).
        public var timedOperations: Int { (warmups + repetitions) * Int(iterations) }

        /// A benchmark named outside any suite: the catalogue's iterations, 5 repetitions after
        /// one warm-up, 120 s (the suites' usual settings).
        public init(catalogueDefaultsFor benchmark: BenchmarkDefinition) {
            self.init(
                id: benchmark.id, iterations: benchmark.defaultIterations, repetitions: 5, warmups: 1, sizeBytes: nil,
                timeoutSeconds: 120)
        }

        /// How many times a boot round boots: warm-ups, then measured boots.
        public var boots: Int { warmups + repetitions }
    }

    public var name: String
    public var description: String
    public var entries: [Entry]
    /// Rounds of the run (see `Schedule`); 1 unless the suite says otherwise.
    public var rounds: Int

    public init(name: String, description: String, entries: [Entry], rounds: Int = 1) {
        self.name = name
        self.description = description
        self.entries = entries
        self.rounds = rounds
    }

    public struct LoadError: Error, CustomStringConvertible, Equatable {
        public let file: String
        public let line: Int?
        public let message: String
        public var description: String {
            if let line { return "\(file):\(line): \(message)" }
            return "\(file): \(message)"
        }
    }

    /// Finds `name` (a suite name or a path to a YAML file).
    public static func load(named name: String, in workspace: Workspace) throws -> Suite {
        let asPath = URL(fileURLWithPath: name)
        if name.hasSuffix(".yaml") || name.hasSuffix(".yml") {
            return try load(from: asPath)
        }
        let file = workspace.suites.appendingPathComponent("\(name).yaml")
        guard FileManager.default.fileExists(atPath: file.path) else {
            let known =
                (try? FileManager.default.contentsOfDirectory(atPath: workspace.suites.path))?
                .filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted() ?? []
            throw LoadError(
                file: file.path, line: nil, message: "unknown suite '\(name)'; known: \(known.joined(separator: ", "))")
        }
        return try load(from: file)
    }

    public static func load(from file: URL) throws -> Suite {
        guard let data = FileManager.default.contents(atPath: file.path), let text = String(data: data, encoding: .utf8) else {
            throw LoadError(file: file.path, line: nil, message: "cannot read the file")
        }
        return try parse(text, file: file.path)
    }

    public static func parse(_ text: String, file: String) throws -> Suite {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw LoadError(file: file, line: nil, message: "the file is empty")
            }
            root = node
        } catch let error as YamlError {
            throw LoadError(
                file: file, line: YAMLLocation.line(of: error), message: "malformed YAML: \(YAMLLocation.message(of: error))")
        }
        func fail(_ node: Node?, _ message: String) -> LoadError {
            LoadError(file: file, line: node?.mark.map { $0.line }, message: message)
        }
        guard let top = root.mapping else { throw fail(root, "a suite must be a mapping with 'name' and 'benchmarks'") }
        let allowedTop: Set<String> = ["name", "description", "rounds", "repetitions", "warmups", "timeout", "benchmarks"]
        for (key, _) in top {
            guard let name = key.string, allowedTop.contains(name) else {
                throw fail(key, "unknown key '\(key.string ?? "?")' (allowed: \(allowedTop.sorted().joined(separator: ", ")))")
            }
        }
        func integer<T: FixedWidthInteger>(_ node: Node, _ what: String, _ range: ClosedRange<T>) throws -> T {
            guard let scalar = node.scalar, let value = T(scalar.string), range.contains(value) else {
                throw fail(
                    node,
                    "\(what) must be an integer from \(range.lowerBound) to \(range.upperBound) (got '\(node.scalar?.string ?? "a non-scalar")')"
                )
            }
            return value
        }
        let timeoutRange = Int(Limits.timeoutSeconds.lowerBound)...Int(Limits.timeoutSeconds.upperBound)
        guard let nameNode = top["name"], let name = nameNode.string, !name.isEmpty else { throw fail(root, "missing 'name'") }
        let description = top["description"]?.string ?? ""
        let rounds = try top["rounds"].map { try integer($0, "rounds", Limits.rounds) } ?? 1
        let repetitions = try top["repetitions"].map { try integer($0, "repetitions", Limits.repetitions) } ?? 5
        let warmups = try top["warmups"].map { try integer($0, "warmups", Limits.warmups) } ?? 1
        let timeout = try top["timeout"].map { try integer($0, "timeout", timeoutRange) } ?? 120
        guard let listNode = top["benchmarks"] else { throw fail(root, "missing 'benchmarks'") }
        guard let list = listNode.sequence, !list.isEmpty else { throw fail(listNode, "'benchmarks' must be a non-empty list") }

        var entries: [Entry] = []
        let allowedEntry: Set<String> = ["id", "iterations", "repetitions", "warmups", "size", "timeout"]
        for item in list {
            guard let mapping = item.mapping else { throw fail(item, "each benchmark must be a mapping with an 'id'") }
            for (key, _) in mapping {
                guard let keyName = key.string, allowedEntry.contains(keyName) else {
                    throw fail(
                        key, "unknown key '\(key.string ?? "?")' (allowed: \(allowedEntry.sorted().joined(separator: ", ")))")
                }
            }
            guard let idNode = mapping["id"], let id = idNode.string else { throw fail(item, "benchmark without 'id'") }
            guard let definition = BenchmarkDefinition.named(id) else { throw fail(idNode, BenchmarkDefinition.unknown(id)) }
            guard !entries.contains(where: { $0.id == id }) else { throw fail(idNode, "benchmark '\(id)' is listed twice") }
            let iterations =
                try mapping["iterations"].map { try integer($0, "iterations", Limits.iterations) }
                ?? definition.defaultIterations
            let size = try mapping["size"].map { try integer($0, "size", Limits.sizeBytes) }
            entries.append(
                Entry(
                    id: id, iterations: iterations,
                    repetitions: try mapping["repetitions"].map { try integer($0, "repetitions", Limits.repetitions) }
                        ?? repetitions,
                    warmups: try mapping["warmups"].map { try integer($0, "warmups", Limits.warmups) } ?? warmups,
                    sizeBytes: size,
                    timeoutSeconds: Double(try mapping["timeout"].map { try integer($0, "timeout", timeoutRange) } ?? timeout)))
        }
        return Suite(name: name, description: description, entries: entries, rounds: rounds)
    }
}
