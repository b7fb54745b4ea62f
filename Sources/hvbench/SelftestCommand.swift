import ArgumentParser
import Bench
import Results
import Foundation
import KVM
import X86

struct SelftestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Self-checks of hvbench's own components.",
        subcommands: [EmulatorSelftestCommand.self, LitmusSelftestCommand.self])
}

/// `hvbench selftest emulator`: differential testing of the x86-64 emulator against KVM.
struct EmulatorSelftestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emulator",
        abstract: "Run generated instruction sequences under KVM and under the emulator and compare them.",
        discussion: """
            Every case (1-4 random integer instructions, random registers, flags and memory) runs at CPL3 in the same
            test kernel under both engines; general registers, the final RIP, the defined RFLAGS bits and the case's
            memory must match. A mismatch is printed with its seed and index, which regenerate it exactly
            (--seed S --case I). Without /dev/kvm, --corpus checks the emulator against KVM outputs recorded in a file.
            Exit status: 0 all cases agree, 1 mismatches, 2 the test could not run.
            """)

    @Option(help: "Number of cases to generate and compare.")
    var cases: Int = 10_000

    @Option(help: "Generator seed (cases are a pure function of seed and index).")
    var seed: UInt64 = 1

    @Option(name: .customLong("case"), help: "Run only this case index (to reproduce a reported mismatch).")
    var only: Int?

    @Option(help: "Compare the emulator against the KVM outputs recorded in this corpus file instead of running KVM.")
    var corpus: String?

    @Option(name: .customLong("write-corpus"), help: "Record KVM's outputs for cases 0..<--cases of --seed into this file.")
    var writeCorpus: String?

    @Option(help: "Emulator to compare with KVM: translate, interpret or both.")
    var emulator: EmulatorSelection = .both

    @Option(name: .customLong("show"), help: "Print at most this many mismatches in full.")
    var show: Int = 20

    func validate() throws {
        guard (1...100_000_000).contains(cases) else { throw ValidationError("--cases must be between 1 and 100000000") }
        if let only, !(0...1_000_000_000).contains(only) { throw ValidationError("--case must be between 0 and 1000000000") }
        guard show >= 0 else { throw ValidationError("--show must not be negative") }
    }

    func run() async throws {
        let report: EmulatorSelfTest.Report
        do {
            if let corpus {
                var combined = EmulatorSelfTest.Report()
                for kind in emulator.kinds {
                    let checked = try EmulatorSelfTest.checkCorpus(at: URL(fileURLWithPath: corpus), emulator: kind)
                    print("corpus \(corpus): \(checked.cases) cases checked against recorded KVM outputs (\(kind.rawValue))")
                    combined.merge(checked)
                }
                report = combined
            } else {
                let kvm: KVMSystem
                do { kvm = try KVMSystem() } catch {
                    printError("\(error)")
                    printError(
                        "without KVM, check the emulator against recorded outputs: --corpus Workloads/emulator/differential-corpus.txt"
                    )
                    throw ExitCode(2)
                }
                if let writeCorpus {
                    try EmulatorSelfTest.writeCorpus(
                        seed: seed, count: cases, kvm: kvm, to: URL(fileURLWithPath: writeCorpus), displayPath: writeCorpus,
                        host: {
                            let environment = EnvironmentRecord.capture(guestImageHash: nil)
                            return "\(environment.cpuModel), kernel \(environment.kernel), KVM module \(environment.kvm.module)"
                        }())
                    print("wrote KVM outputs of \(cases) cases (seed \(seed)) to \(writeCorpus)")
                    return
                }
                let range = only.map { $0..<($0 + 1) } ?? 0..<cases
                report = try EmulatorSelfTest.compare(seed: seed, range: range, kvm: kvm, emulators: emulator.kinds) { done in
                    if isatty(STDERR_FILENO) != 0 { FileHandle.standardError.write(Data("\r\(done)/\(range.count) cases".utf8)) }
                }
                if isatty(STDERR_FILENO) != 0 { FileHandle.standardError.write(Data("\n".utf8)) }
                let emulatorTimes = emulator.kinds.map {
                    String(format: "%@ %.2f s", $0.rawValue, report.secondsByEmulator[$0] ?? 0)
                }
                print(
                    String(
                        format: "%d cases, seed %llu, %d emulator(s): KVM %.2f s, %@ (whole test kernel incl. boot)",
                        range.count, seed, emulator.kinds.count, report.kvmSeconds, emulatorTimes.joined(separator: ", ")))
            }
        } catch let error as ExitCode {
            throw error
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        print("\(report.cases - report.mismatches.count) agree (\(report.faultedAlike) of them raise the same exception in both)")
        guard !report.mismatches.isEmpty else {
            print("no mismatches")
            return
        }
        print("\(report.mismatches.count) mismatches:")
        for mismatch in report.mismatches.prefix(show) { print(mismatch.description) }
        if report.mismatches.count > show { print("... \(report.mismatches.count - show) more (--show N)") }
        throw ExitCode(1)
    }
}
