import ArgumentParser
import Bench
import Foundation
import KVM
import Machine
import Results
import VMM

/// `hvbench selftest litmus`: memory-model litmus tests across vCPUs, under KVM and the emulator.
struct LitmusSelftestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "litmus",
        abstract: "Run memory-model litmus tests on several vCPUs: no outcome x86-TSO forbids may appear.",
        discussion: """
            The benchmark guest runs message passing (mp), store buffering without and with mfence (sb, sb-mfence), load
            buffering (lb), lock-add/xchg atomicity (atomic) and, with four vCPUs, independent reads of independent
            writes (iriw), each side --iterations times without barriers between iterations; it then looks for the
            cycles x86 forbids. "relaxed" counts sb's allowed store-buffer outcome, "overlap" the loads that caught the
            other CPU part-way (evidence the sides ran at the same time). Exit status: 0 nothing forbidden seen,
            1 a forbidden outcome, 2 the test could not run.
            """)

    @Option(help: "Iterations of each test on each CPU (1 to 16777216).")
    var iterations: UInt64 = 1_000_000

    @Option(help: "vCPUs (2 to \(FirmwareTables.maximumGuestCPUs); iriw needs 4).")
    var vcpus: Int = 2

    @Option(help: "Engines, comma-separated: kvm, emulator.")
    var engines: String = "kvm,emulator"

    @Flag(
        name: .customLong("inject-violation"),
        help: "Self-check: plant one forbidden outcome per test (all but sb must then fail).")
    var injectViolation = false

    func validate() throws {
        if let problem = Limits.check(iterations, in: LitmusSelfTest.iterationLimit, "--iterations")
            ?? Limits.check(vcpus, in: 2...FirmwareTables.maximumGuestCPUs, "--vcpus")
        {
            throw ValidationError(problem)
        }
        for engine in engineList where engine != "kvm" && engine != "emulator" {
            throw ValidationError("--engines: unknown engine '\(engine)' (kvm, emulator)")
        }
        if engineList.isEmpty { throw ValidationError("--engines names no engine") }
    }

    private var engineList: [String] { engines.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    func run() async throws {
        let guest: [UInt8]
        do {
            let artifacts = try await ArtifactBuilder(workspace: try Workspace.locate()).build()
            guest = [UInt8](try Data(contentsOf: artifacts.guestImage))
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        var forbidden = false
        var couldNotRun = false
        print("engine    vcpus  test       iterations  forbidden  overlap   relaxed")
        for engine in engineList {
            let cpu: VMBuilder.CPU
            if engine == "kvm" {
                do { cpu = .kvm(try KVMSystem()) } catch {
                    printError("kvm: \(error)")
                    couldNotRun = true
                    continue
                }
            } else {
                cpu = .emulator()
            }
            printError("\(engine): \(vcpus) vCPUs, \(iterations) iterations per test ...")
            let report: LitmusSelfTest.Report
            do {
                report = try LitmusSelfTest.run(
                    guest: guest, cpu: cpu, vcpus: vcpus, iterations: iterations, injectViolation: injectViolation)
            } catch {
                printError("\(engine): \(error)")
                couldNotRun = true
                continue
            }
            for outcome in report.outcomes {
                print(
                    engine.padding(toLength: 10, withPad: " ", startingAt: 0)
                        + "\(vcpus)".padding(toLength: 7, withPad: " ", startingAt: 0)
                        + outcome.test.padding(toLength: 11, withPad: " ", startingAt: 0)
                        + "\(outcome.iterations)".padding(toLength: 12, withPad: " ", startingAt: 0)
                        + "\(outcome.forbidden)".padding(toLength: 11, withPad: " ", startingAt: 0)
                        + "\(outcome.overlap)".padding(toLength: 10, withPad: " ", startingAt: 0) + "\(outcome.relaxed)")
                if outcome.forbidden > 0 { forbidden = true }
            }
            for reason in report.skipped { print("\(engine): skipped: \(reason)") }
            if let failure = report.failure {
                printError("\(engine): \(failure)")
                couldNotRun = true
            }
            printError(String(format: "%@: %.1f s", engine, report.seconds))
        }
        if forbidden {
            print("FORBIDDEN outcomes seen")
            throw ExitCode(1)
        }
        if couldNotRun { throw ExitCode(2) }
        print("no forbidden outcome")
    }
}
