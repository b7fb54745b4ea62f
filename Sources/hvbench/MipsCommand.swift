import ArgumentParser
import Bench
import Results
import Foundation
import Machine

/// `hvbench mips`: the emulator's speed in guest instructions per second, beside native and QEMU TCG.
struct MipsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mips",
        abstract: "Measure the x86-64 emulator: guest MIPS on cpu.int and cpu.mem-lat, next to native and qemu-tcg.",
        discussion: """
            Instructions per operation are counted by the emulator (two boots, N and 2N iterations: the difference is
            the timed loop alone). Each system's MIPS is that count over its own median time per operation; native and
            QEMU run the same workload code, so the figure compares like with like. qemu-tcg runs when
            qemu-system-x86_64 is installed (--no-qemu to skip). Use a release build: a debug build is ~20x slower.
            """)

    @Option(help: "Measured repetitions per system.")
    var repetitions: Int = 5

    @Option(name: .customLong("int-iterations"), help: "cpu.int operations per repetition.")
    var intIterations: UInt64 = 5_000_000

    @Option(name: .customLong("lat-iterations"), help: "cpu.mem-lat loads per repetition.")
    var latencyIterations: UInt64 = 500_000

    @Flag(name: .customLong("no-qemu"), help: "Do not run qemu-tcg.")
    var noQEMU = false

    func validate() throws {
        let iterations = 1000...Limits.iterations.upperBound
        if let problem = Limits.check(repetitions, in: Limits.repetitions, "--repetitions")
            ?? Limits.check(intIterations, in: iterations, "--int-iterations")
            ?? Limits.check(latencyIterations, in: iterations, "--lat-iterations")
        {
            throw ValidationError(problem)
        }
    }

    func run() async throws {
        let artifacts: ArtifactBuilder.Artifacts
        do { artifacts = try await ArtifactBuilder(workspace: try Workspace.locate()).build() } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        let guest = [UInt8](try Data(contentsOf: artifacts.guestImage))
        let entries = [
            Suite.Entry(
                id: "cpu.int", iterations: intIterations, repetitions: repetitions, warmups: 1, sizeBytes: nil,
                timeoutSeconds: 600),
            Suite.Entry(
                id: "cpu.mem-lat", iterations: latencyIterations, repetitions: repetitions, warmups: 1, sizeBytes: nil,
                timeoutSeconds: 600),
        ]
        var counts: [String: EmulatorSpeed.Measurement] = [:]
        for entry in entries {
            printError("counting \(entry.id) instructions per operation under the emulator ...")
            do {
                counts[entry.id] = try EmulatorSpeed.instructionsPerOperation(
                    benchmark: entry.id, iterations: entry.iterations, sizeBytes: entry.sizeBytes, guestImage: guest)
            } catch {
                printError("\(error)")
                throw ExitCode(1)
            }
        }
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-mips-\(getpid())")
        defer { try? FileManager.default.removeItem(at: output) }
        var configuration = RunConfiguration(
            systems: [.native, .fullEmulation], suite: Suite(name: "mips", description: "", entries: entries),
            outputDirectory: output)
        if !noQEMU && ProcessRunner.find("qemu-system-x86_64") != nil { configuration.peers = [PeerKind.qemuTCG] }
        printError(
            "timing native, full-emulation\(configuration.peers.isEmpty ? "" : " and qemu-tcg") (\(repetitions) repetitions each) ..."
        )
        let results = await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration)

        print("benchmark     instr/op  system          ns/op       MIPS     vs native")
        for entry in entries {
            guard let count = counts[entry.id] else { continue }
            let native = results.first { $0.system == "native" && $0.benchmark == entry.id }.flatMap(
                EmulatorSpeed.nanosecondsPerOperation)
            for system in ["native", "full-emulation", "qemu-tcg"] {
                guard let result = results.first(where: { $0.system == system && $0.benchmark == entry.id }) else { continue }
                let label = system == "full-emulation" ? "emulator" : system
                guard let nanoseconds = EmulatorSpeed.nanosecondsPerOperation(result) else {
                    print(
                        "\(pad(entry.id, 13)) \(pad("", 9)) \(pad(label, 15)) \(result.status.rawValue): \(result.reason ?? "")")
                    continue
                }
                let mips = count.instructionsPerOperation / nanoseconds * 1000
                let relative = native.map { String(format: "%.3fx", $0 / nanoseconds) } ?? "-"
                print(
                    "\(pad(entry.id, 13)) \(pad(String(format: "%.1f", count.instructionsPerOperation), 9)) \(pad(label, 15)) "
                        + "\(pad(String(format: "%.2f", nanoseconds), 11)) \(pad(String(format: "%.0f", mips), 8)) \(relative)")
            }
            print(
                String(
                    format: "%@ emulator over the whole VM run (boot and setup included): %.0f MIPS", pad(entry.id, 13),
                    count.wholeRunMIPS))
        }
    }

    private func pad(_ text: String, _ width: Int) -> String {
        text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0)
    }
}
