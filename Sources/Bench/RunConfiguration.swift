import Foundation
import Machine
import X86
import Results

/// Adaptive measurement: keep adding rounds (fresh VM or process, same repetitions) until the 95%
/// CI of the primary metric's median is within ±`targetRelativeHalfWidth`, or the budget is spent.
public struct AdaptivePolicy: Sendable, Equatable {
    public var targetRelativeHalfWidth: Double
    public var budgetSeconds: Double
    public var maxRounds: Int
    /// Samples needed before a CI counts: a percentile bootstrap of the median from fewer than
    /// five values has so few distinct resample medians that its width says nothing.
    public var minimumSamples = 5

    public init(targetRelativeHalfWidth: Double = 0.02, budgetSeconds: Double = 60, maxRounds: Int = 20) {
        self.targetRelativeHalfWidth = targetRelativeHalfWidth
        self.budgetSeconds = budgetSeconds
        self.maxRounds = maxRounds
    }
}

public struct RunConfiguration: Sendable {
    public var systems: [SystemKind]
    public var suite: Suite
    public var outputDirectory: URL
    public var numaNode: Int?
    /// `--pin`: host CPUs for the vCPU threads (vCPU i on entry i mod count) and the native runs.
    public var pinnedCPUs: [Int]?
    public var memoryMiB: Int = 256
    /// `--vcpus`: vCPUs of every guest (QEMU's `-smp`); a benchmark that needs more gets its minimum.
    public var vcpus = 1
    /// `--emulator`: how full emulation runs guest code (translated by default; `interpret` is
    /// the reference interpreter alone). Results record which one ran.
    public var emulator: EmulatorKind = .translate
    /// Emulators that also run every emulator mode, as systems of their own named
    /// "<mode>-<emulator>" (`hvbench mips` times both emulators in one interleaved run).
    public var otherEmulators: [EmulatorKind] = []
    /// Lengthens every timed repetition by this percentage, in the guest and natively (self-check
    /// of regression detection); 0 in normal runs.
    public var slowdownPercent: UInt64 = 0
    /// `--net-backend`: the NIC benchmarks' far end, a TAP into the host kernel (the default: the
    /// path users compare hypervisors on) or the in-VMM peer (VMM and device-model cost alone).
    public var netBackend: NetBackend = .tap
    /// Fault injection for tests (no CLI option): over the TAP, the kernel peer stops answering
    /// or sending after this many datagrams, as a hung far end would.
    var kernelPeerFallsSilentAfter: Int?
    /// KVM doorbells through ioeventfds and an I/O thread (`--no-io-thread` turns it off).
    public var ioThread = true
    /// How long the I/O thread polls for doorbells before it sleeps (`--io-poll-us`).
    public var ioThreadPollMicroseconds = DoorbellPolling.defaultLimitMicroseconds
    public var adaptive: AdaptivePolicy?
    /// Rounds: every (system, benchmark) pair runs once per round, in an order shuffled per round
    /// from `seed` (see `Schedule`). 1 keeps the listed order.
    public var rounds = 1
    public var seed: UInt64 = 0
    /// Other VMMs running the same guest, after hvbench's own systems.
    public var peers: [PeerKind] = []
    /// Disk benchmarks: the raw image (default: disk.img, 64 MiB, sparse, in the output folder),
    /// O_DIRECT, and how many sectors of it the benchmarks use.
    public var diskImagePath: String?
    /// The user allowed write benchmarks to overwrite the region of an image hvbench did not create.
    public var overwriteDiskImage = false
    public var directIO = false
    public var diskRegionSectors: UInt64 = RunConfiguration.defaultDiskRegionSectors
    /// 16 MiB: what the disk benchmarks read and write of their image (nothing outside it).
    public static let defaultDiskRegionSectors: UInt64 = 32768

    public init(systems: [SystemKind], suite: Suite, outputDirectory: URL, numaNode: Int? = nil) {
        self.systems = systems
        self.suite = suite
        self.outputDirectory = outputDirectory
        self.numaNode = numaNode
    }
}

extension RunConfiguration {
    /// The vCPUs a guest running `benchmark` gets: `--vcpus`, or the benchmark's minimum if higher.
    public func vcpus(for benchmark: String) -> Int {
        max(vcpus, BenchmarkDefinition.named(benchmark)?.minimumCPUs ?? 1)
    }
}

public enum ProgressEvent: Sendable {
    case starting(system: String, benchmark: String, index: Int, total: Int, repetitions: Int)
    /// A measured repetition arrived from the guest or native process.
    case sample
    case finished(BenchmarkResult)
    case notice(String)
}
