import ArgumentParser
import Bench
import Results
import Foundation
import Machine
import X86

/// `hvbench mips`: the emulator's speed in guest instructions per second, beside native and QEMU TCG.
struct MipsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mips",
        abstract: "Measure the x86-64 emulator's translator and interpreter: guest MIPS next to native and qemu-tcg.",
        discussion: """
            Instructions per operation are counted by the emulator (two boots, N and 2N iterations: the difference is
            the timed loop alone; both emulators must count the same). Each system's MIPS is that count over its own median time per operation; native and
            QEMU run the same workload code, so the figure compares like with like. Native, the translator, the interpreter
            and qemu-tcg run interleaved in one run; cpu.pio, cpu.pgfault and cpu.cpuid (a trap or exit each) are shown
            in ns/op. qemu-tcg runs when
            qemu-system-x86_64 is installed (--no-qemu to skip). Use a release build: a debug build is ~20x slower.
            """)

    @Option(help: "Measured repetitions per system.")
    var repetitions: Int = 5

    @Option(name: .customLong("int-iterations"), help: "cpu.int operations per repetition.")
    var intIterations: UInt64 = 5_000_000

    @Option(name: .customLong("lat-iterations"), help: "cpu.mem-lat loads per repetition.")
    var latencyIterations: UInt64 = 500_000

    @Option(name: .customLong("platform-iterations"), help: "cpu.pio, cpu.pgfault and cpu.cpuid operations per repetition.")
    var platformIterations: UInt64 = 20000

    @Flag(name: .customLong("no-qemu"), help: "Do not run qemu-tcg.")
    var noQEMU = false

    func validate() throws {
        let iterations = 1000...Limits.iterations.upperBound
        if let problem = Limits.check(repetitions, in: Limits.repetitions, "--repetitions")
            ?? Limits.check(intIterations, in: iterations, "--int-iterations")
            ?? Limits.check(latencyIterations, in: iterations, "--lat-iterations")
            ?? Limits.check(platformIterations, in: 100...Limits.iterations.upperBound, "--platform-iterations")
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
        func entry(_ id: String, _ iterations: UInt64) -> Suite.Entry {
            Suite.Entry(
                id: id, iterations: iterations, repetitions: repetitions, warmups: 1, sizeBytes: nil, timeoutSeconds: 600)
        }
        let counted = [
            entry("cpu.int", intIterations), entry("cpu.mem-lat", latencyIterations), entry("cpu.callret", intIterations),
        ]
        // Platform operations: a trap or exit each, so nanoseconds per operation is the figure.
        let platform = ["cpu.pio", "cpu.pgfault", "cpu.cpuid"].map { entry($0, platformIterations) }
        // Per benchmark: the interpreter's count (the reference) and the translator's measurement
        // (its whole-run MIPS is the translator's).
        var counts: [String: (instructionsPerOperation: Double, translated: EmulatorSpeed.Measurement)] = [:]
        for entry in counted {
            printError("counting \(entry.id) instructions per operation under both emulators ...")
            do {
                // Both emulators retire the same instructions in the timed loop; the boots' other
                // parts may differ by a few (spin-waits on the clock), hence the tolerance.
                let measurements = try EmulatorKind.allCases.map {
                    try EmulatorSpeed.instructionsPerOperation(
                        benchmark: entry.id, iterations: entry.iterations, sizeBytes: entry.sizeBytes, guestImage: guest,
                        emulator: $0)
                }
                let (translated, interpreted) = (
                    measurements[0].instructionsPerOperation, measurements[1].instructionsPerOperation
                )
                guard abs(translated - interpreted) <= interpreted * 1e-4 else {
                    printError(
                        "\(entry.id): the translator retired \(translated) instructions per operation, the interpreter "
                            + "\(interpreted)")
                    throw ExitCode(1)
                }
                counts[entry.id] = (interpreted, measurements[0])
            } catch let error as ExitCode {
                throw error
            } catch {
                printError("\(error)")
                throw ExitCode(1)
            }
        }
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-mips-\(getpid())")
        defer { try? FileManager.default.removeItem(at: output) }
        let entries = counted + platform
        // Each system with the label the table gives it; full-emulation translates.
        var systems: [(system: SystemDefinition, label: String)] = [
            (.native, "native"), (.fullEmulation, "translator"), (.fullEmulationInterpret, "interpreter"),
        ]
        if !noQEMU && QEMUPeer.executable != nil { systems.append((.qemuTCG, "qemu-tcg")) }
        var plan = RunPlan(
            systems: systems.map(\.system), suite: Suite(name: "mips", description: "", entries: entries),
            outputDirectory: output)
        plan.vm.emulator = .translate
        printError(
            "timing native, both emulators\(systems.count > 3 ? " and qemu-tcg" : "") "
                + "(\(repetitions) repetitions each, interleaved) ...")
        let results = await BenchmarkRunner(artifacts: artifacts) { _ in }.run(plan).results

        print("benchmark     instr/op  system          ns/op       MIPS     vs native  vs interpreter")
        for entry in entries {
            let count = counts[entry.id]
            func result(_ system: SystemDefinition) -> BenchmarkResult? {
                results.first { $0.system == system.name && $0.benchmark == entry.id }
            }
            let native = result(.native).flatMap(EmulatorSpeed.nanosecondsPerOperation)
            let interpreter = result(.fullEmulationInterpret).flatMap(EmulatorSpeed.nanosecondsPerOperation)
            for (system, label) in systems {
                guard let result = result(system) else { continue }
                let instructions = count.map { String(format: "%.1f", $0.instructionsPerOperation) } ?? "-"
                guard let nanoseconds = EmulatorSpeed.nanosecondsPerOperation(result) else {
                    print(
                        "\(pad(entry.id, 13)) \(pad(instructions, 9)) \(pad(label, 15)) \(result.status.rawValue): \(result.reason ?? "")"
                    )
                    continue
                }
                let mips = count.map { String(format: "%.0f", $0.instructionsPerOperation / nanoseconds * 1000) } ?? "-"
                let relative = native.map { String(format: "%.3fx", $0 / nanoseconds) } ?? "-"
                let overInterpreter = interpreter.map { String(format: "%.2fx", $0 / nanoseconds) } ?? "-"
                print(
                    "\(pad(entry.id, 13)) \(pad(instructions, 9)) \(pad(label, 15)) "
                        + "\(pad(String(format: "%.2f", nanoseconds), 11)) \(pad(mips, 8)) \(pad(relative, 10)) \(overInterpreter)"
                )
            }
            if let count {
                print(
                    String(
                        format: "%@ translator over the whole VM run (boot and setup included): %.0f MIPS", pad(entry.id, 13),
                        count.translated.wholeRunMIPS))
            }
        }
    }

    private func pad(_ text: String, _ width: Int) -> String {
        text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0)
    }
}
