import Foundation
import Results
import Machine
import X86
import VMM

/// The emulator's own speed: guest instructions retired per second on real workloads.
///
/// The emulator counts the instructions it retires; the timed part of a benchmark is isolated by
/// booting the guest twice, with N and 2N iterations: the difference of the two counts is the
/// instructions of N operations. Native and QEMU cannot count guest instructions, but they run the
/// same workload code (the native runner is compiled from the same source with the same flags), so
/// their figure is the same instructions per operation over their own time per operation.
public enum EmulatorSpeed {
    public struct Measurement: Sendable {
        public let benchmark: String
        public let instructionsPerOperation: Double
        /// Retired instructions over the whole VM's wall time (boot and setup included).
        public let wholeRunMIPS: Double
    }

    public struct SpeedError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func instructionsPerOperation(
        benchmark: String, iterations: UInt64, sizeBytes: UInt64?, guestImage: [UInt8], memoryMiB: Int = 256,
        emulator: EmulatorKind = .translate
    ) throws -> Measurement {
        var counts: [UInt64] = []
        var wholeRun = 0.0
        for multiple: UInt64 in [1, 2] {
            let job = GuestJob(
                bench: benchmark, iterations: iterations * multiple, repetitions: 1, warmups: 0, sizeBytes: sizeBytes)
            let boot = try VMBuilder.boot(
                VMDescription(kernel: guestImage, commandLine: job.commandLine, memoryMiB: memoryMiB, cpu: .emulator(emulator)),
                timeout: 600)
            guard case .exitDevice(1) = boot.outcome.ending, let retired = boot.instructionsRetired else {
                throw SpeedError(description: "\(benchmark) under the emulator: \(boot.outcome.ending.summary)")
            }
            counts.append(retired)
            let seconds = Double(boot.outcome.endedAtNanoseconds - boot.outcome.startedAtNanoseconds) / 1e9
            wholeRun = Double(retired) / seconds / 1e6
        }
        guard counts[1] > counts[0] else {
            throw SpeedError(description: "\(benchmark): instruction counts did not grow with iterations")
        }
        return Measurement(
            benchmark: benchmark, instructionsPerOperation: Double(counts[1] - counts[0]) / Double(iterations),
            wholeRunMIPS: wholeRun)
    }

    /// Median nanoseconds per operation of a result (cpu.int: from throughput; others: ns per op).
    public static func nanosecondsPerOperation(_ result: BenchmarkResult) -> Double? {
        guard result.status == .ok else { return nil }
        if let perOp = result.metrics.first(where: { $0.name == "ns_per_op" }) { return perOp.summary.median }
        if let latency = result.metrics.first(where: { $0.name == "latency" }) { return latency.summary.median }
        return nil
    }
}
