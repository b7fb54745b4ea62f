import Foundation
import Results
import KVM
import Differential
import Machine
import VMM
import X86

/// Differential testing of the emulator against KVM: the same generated instruction sequences run
/// at CPL3 in the same test kernel under both engines, from the same register and memory state,
/// and everything the sequences architecturally define must come out the same.
public enum EmulatorSelfTest {
    public struct Mismatch: Sendable {
        public let seed: UInt64
        public let index: Int
        public let testCase: DifferentialCase
        public let differences: [String]
        /// The emulator that disagreed with KVM (translate or interpret).
        public let engine: EmulatorKind

        /// A reproducible report: the seed and index regenerate the case.
        public var description: String {
            let registers = testCase.registers.enumerated().map {
                "\(DifferentialHarness.registerName($0.offset))=0x\(String($0.element, radix: 16))"
            }
            return """
                case \(index) of seed \(seed), emulator \(engine.rawValue) (reproduce: hvbench selftest emulator --seed \(seed) --case \(index) --emulator \(engine.rawValue))
                  sequence: \(testCase.description)
                  bytes:    \(testCase.code.map { String(format: "%02x", $0) }.joined(separator: " "))
                  entry:    \(registers.joined(separator: " ")) rflags=0x\(String(testCase.rflags, radix: 16))
                  \(differences.joined(separator: "\n  "))
                """
        }
    }

    public struct Report: Sendable {
        public var cases = 0
        /// Cases both engines ended by raising the same exception (ud2, #DE, ...).
        public var faultedAlike = 0
        public var mismatches: [Mismatch] = []
        public var kvmSeconds = 0.0
        /// Wall time of each emulator's runs (whole test kernel, boot included).
        public var secondsByEmulator: [EmulatorKind: Double] = [:]
        /// Wall time of all emulator runs.
        public var emulatorSeconds: Double { secondsByEmulator.values.reduce(0, +) }

        public init() {}

        /// Adds another report's cases, mismatches and times.
        public mutating func merge(_ other: Report) {
            cases += other.cases
            faultedAlike += other.faultedAlike
            mismatches += other.mismatches
            kvmSeconds += other.kvmSeconds
            secondsByEmulator.merge(other.secondsByEmulator, uniquingKeysWith: +)
        }

        /// Counts one compared case (once per emulator): a mismatch when `differences` is not empty.
        mutating func record(
            seed: UInt64, index: Int, testCase: DifferentialCase, expectedStatus: UInt64, differences: [String],
            engine: EmulatorKind
        ) {
            cases += 1
            if !differences.isEmpty {
                mismatches.append(
                    Mismatch(seed: seed, index: index, testCase: testCase, differences: differences, engine: engine))
            } else if expectedStatus != 1 {
                faultedAlike += 1
            }
        }
    }

    public struct HarnessFailure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Runs `cases` in the test kernel under one engine and reads back what each left behind.
    public static func outcomes(of cases: [DifferentialCase], cpu: VMBuilder.CPU, timeout: Double = 120) throws -> (
        [DifferentialOutcome], Double
    ) {
        var outcomes: [DifferentialOutcome] = []
        var readError: Error?
        let boot = try VMBuilder.boot(
            VMDescription(
                kernel: DifferentialHarness.kernelImage(), commandLine: "", memoryMiB: DifferentialHarness.memoryMiB, cpu: cpu),
            timeout: timeout, prepare: { try DifferentialHarness.prepare($0, cases: cases) },
            inspect: { memory in
                do { outcomes = try DifferentialHarness.outcomes(memory, cases: cases) } catch { readError = error }
            })
        let engine = boot.engineName
        guard case .exitDevice(let status) = boot.outcome.ending, status == 1 else {
            throw HarnessFailure(
                description: "the differential test kernel did not finish under \(engine): \(boot.outcome.ending.summary)"
                    + boot.engineDiagnostics.map { "; \($0)" }.joined())
        }
        if let readError { throw readError }
        let seconds = Double(boot.outcome.endedAtNanoseconds - boot.outcome.startedAtNanoseconds) / 1e9
        return (outcomes, seconds)
    }

    /// Generates cases `range` of `seed`, runs them under KVM and each of `emulators`, and compares.
    public static func compare(
        seed: UInt64, range: Range<Int>, kvm: KVMSystem, emulators: [EmulatorKind] = EmulatorKind.allCases,
        progress: ((Int) -> Void)? = nil
    ) throws -> Report {
        var report = Report()
        let generator = DifferentialCaseGenerator(seed: seed)
        var start = range.lowerBound
        while start < range.upperBound {
            // A batch never wraps the slot numbering, so its cases occupy distinct slots.
            let slotEnd = (start / DifferentialHarness.maximumCases + 1) * DifferentialHarness.maximumCases
            let end = min(range.upperBound, slotEnd)
            let batch = (start..<end).map { generator.makeCase(index: $0) }
            let (expected, kvmSeconds) = try outcomes(of: batch, cpu: .kvm(kvm))
            report.kvmSeconds += kvmSeconds
            for offset in batch.indices where expected[offset].status == 0 {
                throw HarnessFailure(description: "case \(start + offset) did not run under KVM (the harness stopped early)")
            }
            for emulator in emulators {
                let (actual, emulatorSeconds) = try outcomes(of: batch, cpu: .emulator(emulator, translateAfter: 1))
                report.secondsByEmulator[emulator, default: 0] += emulatorSeconds
                for offset in batch.indices {
                    report.record(
                        seed: seed, index: start + offset, testCase: batch[offset], expectedStatus: expected[offset].status,
                        differences: DifferentialHarness.differences(
                            expected: expected[offset], actual: actual[offset], flagMask: batch[offset].flagMask),
                        engine: emulator)
                }
            }
            progress?(end - range.lowerBound)
            start = end
        }
        return report
    }

    // MARK: Committed expected outputs

    /// One line per case: what KVM produced, so the emulator can be checked where KVM is absent.
    /// `index status finalRIP rflags&mask r0..r15 dataHash codeHash` (hex).
    public static func corpusLine(index: Int, testCase: DifferentialCase, outcome: DifferentialOutcome) -> String {
        var fields = [String(index), hex(outcome.status), hex(outcome.finalRIP), hex(outcome.rflags & testCase.flagMask)]
        fields += outcome.registers.map(hex)
        fields += [hex(fnv(outcome.data)), hex(fnv(testCase.code))]
        return fields.joined(separator: " ")
    }

    public static func writeCorpus(seed: UInt64, count: Int, kvm: KVMSystem, to url: URL, displayPath: String, host: String)
        throws
    {
        let generator = DifferentialCaseGenerator(seed: seed)
        let cases = (0..<count).map { generator.makeCase(index: $0) }
        let (expected, _) = try outcomes(of: cases, cpu: .kvm(kvm))
        var text = "# hvbench differential corpus: KVM's outputs for cases 0..<\(count) of seed \(seed)\n"
        text +=
            "# recorded on: \(host)\n# regenerate: hvbench selftest emulator --write-corpus \(displayPath) --seed \(seed) --cases \(count)\n"
        text += "seed \(seed) cases \(count)\n"
        for index in cases.indices {
            text += corpusLine(index: index, testCase: cases[index], outcome: expected[index]) + "\n"
        }
        try Data(text.utf8).write(to: url, options: .atomic)
    }

    /// Runs the corpus's cases under the emulator and compares with the recorded KVM outputs.
    public static func checkCorpus(at url: URL, emulator: EmulatorKind = .translate) throws -> Report {
        let text = try String(contentsOf: url, encoding: .utf8)
        var lines = text.split(separator: "\n").filter { !$0.hasPrefix("#") }
        guard let header = lines.first?.split(separator: " "), header.count == 4, header[0] == "seed",
            let seed = UInt64(header[1]),
            let count = Int(header[3])
        else { throw HarnessFailure(description: "\(url.path): missing 'seed S cases N' header") }
        lines.removeFirst()
        guard lines.count == count else {
            throw HarnessFailure(description: "\(url.path): \(lines.count) case lines, header says \(count)")
        }
        let generator = DifferentialCaseGenerator(seed: seed)
        let cases = (0..<count).map { generator.makeCase(index: $0) }
        let (actual, seconds) = try outcomes(of: cases, cpu: .emulator(emulator, translateAfter: 1))
        var report = Report()
        report.secondsByEmulator[emulator] = seconds
        for (lineNumber, line) in lines.enumerated() {
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count == 22, let index = Int(fields[0]), index == lineNumber else {
                throw HarnessFailure(description: "\(url.path): malformed case line \(lineNumber + 1)")
            }
            let numbers = fields[1...].compactMap { UInt64($0, radix: 16) }
            guard numbers.count == 21 else { throw HarnessFailure(description: "\(url.path): bad number on case line \(index)") }
            let testCase = cases[index]
            guard numbers[20] == fnv(testCase.code) else {
                throw HarnessFailure(
                    description:
                        "\(url.path): case \(index) no longer matches the generator (it changed); regenerate the corpus on a KVM host"
                )
            }
            // The corpus keeps a hash of the data block, so memory is compared through it.
            let expected = DifferentialOutcome(
                status: numbers[0], registers: Array(numbers[3..<19]), rflags: numbers[2], finalRIP: numbers[1], data: [])
            var withoutData = actual[index]
            withoutData.data = []
            var found = DifferentialHarness.differences(expected: expected, actual: withoutData, flagMask: testCase.flagMask)
            if expected.status == 1 && actual[index].status == 1 && fnv(actual[index].data) != numbers[19] {
                found.append("memory: data block differs from KVM's")
            }
            report.record(
                seed: seed, index: index, testCase: testCase, expectedStatus: expected.status, differences: found,
                engine: emulator)
        }
        return report
    }

    static func hex(_ value: UInt64) -> String { String(value, radix: 16) }

    static func fnv(_ bytes: [UInt8]) -> UInt64 {
        var hash = FNV1a64()
        hash.add(bytes)
        return hash.value
    }
}
