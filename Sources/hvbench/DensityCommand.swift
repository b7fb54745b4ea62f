import ArgumentParser
import Bench
import Foundation
import Results

/// `hvbench density`: host memory per idle container and per idle VM, for 1, 10 and 50 of them.
struct DensityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "density",
        abstract: "Measure host memory per idle container and per idle VM (PSS and pinned host memory), N at a time.",
        discussion: """
            For each count and system, N idle instances start and settle, then their processes' PSS (shared pages split
            among their users) and the growth of the host's pinned memory (anonymous, shmem, page tables, kernel stacks,
            unreclaimable slab: kernel memory included, page cache not) are divided by N. An idle
            container is the native runner blocked in pause() in its own OCI bundle (crun or runc, as --mode names it);
            an idle VM is `hvbench boot` of the benchmark guest waiting in hlt for requests on its NIC, one process per VM.
            The host figure moves with everything else on the host: read the 1-instance figures with that in mind.
            """)

    @Option(help: "Systems, comma-separated: container systems and hvbench's VM modes.")
    var mode = "container,paravirt-io"

    @Option(help: "How many idle instances at a time, comma-separated.")
    var counts = "1,10,50"

    @Option(help: "Memory of each VM and each container's memory limit, MiB.")
    var memory = 256

    @Option(help: "Seconds the instances settle before they are measured.")
    var settle = 2.0

    @Option(help: "Write the figures as JSON to this file too (written atomically; an existing file needs --force).")
    var out: String?

    @Flag(help: "Replace an existing --out file.")
    var force = false

    static let countLimit = 1...200

    func systems() throws -> [SystemDefinition] {
        try mode.split(separator: ",").map { word in
            let name = word.trimmingCharacters(in: .whitespaces)
            guard let system = SystemRegistry.named(name), Density.supports(system) else {
                let known = SystemRegistry.all.filter(Density.supports).map(\.name).joined(separator: ", ")
                throw ValidationError("--mode: '\(name)' cannot be measured for density; known: \(known)")
            }
            return system
        }
    }

    func parsedCounts() throws -> [Int] {
        try counts.split(separator: ",").map { word in
            guard let count = Int(word.trimmingCharacters(in: .whitespaces)), Self.countLimit.contains(count) else {
                throw ValidationError(
                    "--counts: '\(word)' is not a count of instances in \(Self.countLimit.lowerBound)...\(Self.countLimit.upperBound)"
                )
            }
            return count
        }
    }

    func validate() throws {
        _ = try systems()
        _ = try parsedCounts()
        if let problem = Limits.check(memory, in: 16...65536, "--memory (MiB)")
            ?? Limits.check(settle, in: 0...600, "--settle (seconds)")
        {
            throw ValidationError(problem)
        }
        if let out, FileManager.default.fileExists(atPath: out), !force {
            throw ValidationError("\(out) exists; pass --force to replace it, or choose another file")
        }
    }

    func run() async throws {
        let artifacts: ArtifactBuilder.Artifacts
        do { artifacts = try await ArtifactBuilder(workspace: try Workspace.locate()).build() } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        var plan = Density.Plan(systems: try systems(), counts: try parsedCounts(), vmExecutable: executable)
        plan.memoryMiB = memory
        plan.settleSeconds = settle
        let results = await Density.measure(plan, artifacts: artifacts) { printError($0) }
        print(Self.table(results))
        if let out {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try writeAtomically(try encoder.encode(results), to: URL(fileURLWithPath: out))
            print("wrote \(out)")
        }
        if results.contains(where: { $0.status == .failed }) { throw ExitCode(1) }
    }

    static func table(_ results: [Density.Result]) -> String {
        func figure(_ value: Double?) -> String { value.map { String(format: "%.1f", $0) } ?? "-" }
        var lines = [
            "system           instances  PSS/instance (MiB)  host pinned/instance (MiB)  cgroup/instance (MiB)  status",
            String(repeating: "-", count: 112),
        ]
        for result in results {
            let status = result.status == .ok ? "ok" : "\(result.status.rawValue): \(result.reason ?? "")"
            lines.append(
                result.system.padding(toLength: 17, withPad: " ", startingAt: 0)
                    + "\(result.count)".padding(toLength: 11, withPad: " ", startingAt: 0)
                    + figure(result.pssPerInstanceMiB).padding(toLength: 20, withPad: " ", startingAt: 0)
                    + figure(result.hostMemoryPerInstanceMiB).padding(toLength: 28, withPad: " ", startingAt: 0)
                    + figure(result.cgroupPerInstanceMiB).padding(toLength: 23, withPad: " ", startingAt: 0) + status)
        }
        return lines.joined(separator: "\n")
    }
}
