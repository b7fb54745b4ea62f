import Foundation
import Testing
import VMM

@testable import Bench
@testable import KVM

/// The memory-model litmus tests (`hvbench selftest litmus`): with four vCPUs, a million
/// iterations of each test, no outcome x86-TSO forbids, in the emulator's vCPU threads and
/// under KVM; and a planted violation is found by every check.
@Suite struct LitmusTests {
    static let allTests = LitmusSelfTest.twoCPUTests + ["iriw"]

    func guest() async throws -> [UInt8] {
        [UInt8](try Data(contentsOf: try await Built.artifacts.value.guestImage))
    }

    func expectNothingForbidden(_ report: LitmusSelfTest.Report) {
        #expect(report.failure == nil, "\(report.failure ?? "")")
        #expect(report.outcomes.map(\.test) == Self.allTests)
        for outcome in report.outcomes {
            #expect(outcome.iterations == 1_000_000)
            #expect(outcome.forbidden == 0, "\(report.engine) \(outcome.test): \(outcome.forbidden) forbidden outcomes")
        }
        // However the host schedules the vCPU threads, a million iterations per side overlap.
        #expect(report.outcomes.reduce(0) { $0 + $1.overlap } > 0, "the sides never ran at the same time")
        #expect(report.passed)
    }

    @Test func nothingForbiddenAppearsInTheEmulator() async throws {
        let report = try LitmusSelfTest.run(guest: try await guest(), cpu: .emulator(), vcpus: 4, iterations: 1_000_000)
        #expect(report.engine == "emulator-translate")
        expectNothingForbidden(report)
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func nothingForbiddenAppearsUnderKVM() async throws {
        let report = try LitmusSelfTest.run(
            guest: try await guest(), cpu: .kvm(try KVMSystem()), vcpus: 4, iterations: 1_000_000)
        #expect(report.engine == "kvm")
        expectNothingForbidden(report)
    }

    /// The checks themselves: one forbidden outcome planted per test is reported by each (sb has
    /// none to plant: its store-buffer outcome is allowed).
    @Test func everyCheckFindsAPlantedViolation() async throws {
        var engines: [VMBuilder.CPU] = [.emulator()]
        if Host.hasKVM { engines.append(.kvm(try KVMSystem())) }
        for cpu in engines {
            let report = try LitmusSelfTest.run(
                guest: try await guest(), cpu: cpu, vcpus: 4, iterations: 10_000, injectViolation: true)
            #expect(report.failure == nil, "\(report.failure ?? "")")
            #expect(report.outcomes.map(\.test) == Self.allTests)
            for outcome in report.outcomes {
                #expect((outcome.forbidden > 0) == (outcome.test != "sb"), "\(report.engine) \(outcome.test)")
            }
            #expect(!report.passed)
        }
    }

    @Test func twoVCPUsSkipIRIWWithTheReason() async throws {
        let report = try LitmusSelfTest.run(guest: try await guest(), cpu: .emulator(), vcpus: 2, iterations: 1000)
        #expect(report.outcomes.map(\.test) == LitmusSelfTest.twoCPUTests)
        #expect(report.skipped == ["iriw-needs-four-cpus"])
        #expect(report.passed)
        let alone = try LitmusSelfTest.run(guest: try await guest(), cpu: .emulator(), vcpus: 1, iterations: 1000)
        #expect(alone.failure == "no-second-cpu")
    }

    @Test func malformedLitmusLinesAreErrorsNamingTheLine() throws {
        let good = try LitmusSelfTest.parse(
            console: "HVB1 hello guest=x\nHVB1 litmus bench=mp iterations=5 forbidden=0 overlap=2 relaxed=0\n")
        #expect(good.outcomes == [.init(test: "mp", iterations: 5, forbidden: 0, overlap: 2, relaxed: 0)])
        #expect {
            try LitmusSelfTest.parse(console: "x\nHVB1 litmus bench=mp iterations=5 forbidden=-1 overlap=2 relaxed=0")
        } throws: { "\($0)".contains("console line 2: ") && "\($0)".contains("forbidden=-1 is not an unsigned integer") }
        #expect {
            try LitmusSelfTest.parse(console: "HVB1 litmus iterations=5 forbidden=0 overlap=2 relaxed=0")
        } throws: { "\($0)".contains("console line 1: ") && "\($0)".contains("missing bench") }
        // Counts beyond what a run can produce are out of range, past the grammar.
        #expect {
            try LitmusSelfTest.parse(console: "HVB1 litmus bench=mp iterations=5 forbidden=0 overlap=2 relaxed=9999999999999")
        } throws: { "\($0)".contains("console line 1: litmus count out of range") }
        #expect(throws: LitmusError.self) {
            try LitmusSelfTest.run(guest: [], cpu: .emulator(), vcpus: 2, iterations: 0)
        }
    }
}
