import Foundation
import Machine
import Results
import VMM

/// `hvbench selftest litmus`: the benchmark guest runs the memory-model litmus tests
/// (Workloads/guest/kernel/litmus.c) on two or more vCPUs and prints one line per test; no
/// outcome x86-TSO forbids may appear. Run under KVM and under the emulator, it checks that the
/// emulator's vCPU threads keep x86's ordering and atomicity.
public enum LitmusSelfTest {
    /// One test's line: `HVB1 litmus bench=<test> iterations=N forbidden=F overlap=O relaxed=R`.
    public struct Outcome: Equatable, Sendable {
        public var test: String
        public var iterations: UInt64
        /// Outcomes x86 forbids (lost updates, for `atomic`): must be 0.
        public var forbidden: UInt64
        /// Loads that caught another CPU part-way: evidence the sides really ran concurrently.
        public var overlap: UInt64
        /// Outcomes x86 allows but sequential consistency does not (`sb`, without a fence).
        public var relaxed: UInt64
    }

    public struct Report: Sendable {
        public var engine: String
        public var vcpus: Int
        public var outcomes: [Outcome]
        /// Tests the guest skipped, with its reason (`iriw` needs four CPUs).
        public var skipped: [String]
        /// Why the run failed (a guest failure line, the VM's ending), or nil.
        public var failure: String?
        public var seconds: Double

        public var passed: Bool { failure == nil && !outcomes.isEmpty && outcomes.allSatisfy { $0.forbidden == 0 } }
    }

    /// The tests the guest runs with two CPUs (`iriw` too with four).
    public static let twoCPUTests = ["mp", "sb", "sb-mfence", "lb", "atomic"]
    public static let iterationLimit: ClosedRange<UInt64> = 1...(1 << 24)

    /// Reads the litmus lines of a console; an ill-formed litmus line is an error naming it.
    public static func parse(console: String) throws -> (outcomes: [Outcome], skipped: [String], failure: String?) {
        var outcomes: [Outcome] = []
        var skipped: [String] = []
        var failure: String?
        for (index, line) in console.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let parsed: ResultLine?
            do { parsed = try ResultLine.parse(String(line)) } catch {
                throw LitmusError(description: "console line \(index + 1): \(error)")
            }
            switch parsed {
            case .litmus(let test, let iterations, let forbidden, let overlap, let relaxed)?:
                let counts = [iterations, forbidden, overlap, relaxed]
                guard counts.allSatisfy({ $0 <= 1 << 40 }) else {
                    throw LitmusError(description: "console line \(index + 1): litmus count out of range: \(line)")
                }
                outcomes.append(
                    Outcome(test: test, iterations: iterations, forbidden: forbidden, overlap: overlap, relaxed: relaxed))
            case .skip("litmus", let reason)?: skipped.append(reason)
            case .fail(_, let reason)?: failure = reason
            default: break
            }
        }
        return (outcomes, skipped, failure)
    }

    static func litmusJob(iterations: UInt64, injectViolation: Bool) -> GuestJob {
        var job = GuestJob(bench: "litmus", iterations: iterations, repetitions: 1, warmups: 0)
        job.injectViolation = injectViolation
        return job
    }

    /// Boots `guest` with `vcpus` vCPUs on `cpu` and runs every test `iterations` times.
    /// - Parameter injectViolation: the self-check of the checks: the guest plants one forbidden
    ///   outcome in every test but `sb` (where none is forbidden), which must each report it.
    public static func run(
        guest: [UInt8], cpu: VMBuilder.CPU, vcpus: Int, iterations: UInt64, injectViolation: Bool = false,
        timeout: Double = 600
    ) throws -> Report {
        guard iterationLimit.contains(iterations) else {
            throw LitmusError(description: "litmus iterations \(iterations) out of range \(iterationLimit)")
        }
        // Four arrays of 32-bit loads per test, plus the guest's own needs.
        let memoryMiB = 64 + Int((iterations + 1) * 16 >> 20)
        let started = Date()
        let boot = try VMBuilder.boot(
            VMDescription(
                kernel: guest, commandLine: litmusJob(iterations: iterations, injectViolation: injectViolation).commandLine,
                memoryMiB: memoryMiB, cpu: cpu, vcpus: vcpus), timeout: timeout)
        let (outcomes, skipped, failure) = try parse(console: boot.console)
        var report = Report(
            engine: boot.engineName, vcpus: vcpus, outcomes: outcomes, skipped: skipped, failure: failure,
            seconds: Date().timeIntervalSince(started))
        if report.failure == nil, boot.outcome.ending != .exitDevice(status: 1) {  // (0 << 1) | 1: the guest passed
            report.failure = "the guest ended with \(boot.outcome.ending.summary)"
        }
        let expected = twoCPUTests + (vcpus >= 4 ? ["iriw"] : [])
        if report.failure == nil, outcomes.map(\.test) != expected {
            report.failure = "expected the tests \(expected), the guest reported \(outcomes.map(\.test))"
        }
        return report
    }
}

public struct LitmusError: Error, CustomStringConvertible {
    public let description: String
}
