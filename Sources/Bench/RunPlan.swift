import Foundation
import Machine
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

/// Where the host runs a VM's vCPU threads (and the native process): a NUMA node or CPUs.
public struct HostPlacement: Sendable, Equatable {
    /// `--numa-node`: guest RAM, vCPU threads and the native process on this node.
    public var numaNode: Int?
    /// `--pin`: host CPUs for the vCPU threads (vCPU i on entry i mod count) and the native runs.
    public var pinnedCPUs: [Int]?

    public init(numaNode: Int? = nil, pinnedCPUs: [Int]? = nil) {
        self.numaNode = numaNode
        self.pinnedCPUs = pinnedCPUs
    }
}

/// What every VM of a run gets, whichever system it belongs to.
public struct VMSettings: Sendable {
    public var memoryMiB = 256
    /// `--vcpus`: vCPUs of every guest (QEMU's `-smp`); a benchmark that needs more gets its minimum.
    public var vcpus = 1
    /// `--sharing-vms`: how many VMs mem.page-sharing runs side by side.
    public var sharingVMs = 4
    public static let sharingVMRange = 2...8
    /// `--emulator`: how emulator systems that do not pin an emulator run guest code (translated
    /// by default). Results record which one ran.
    public var emulator: EmulatorKind = .translate
    /// KVM doorbells through ioeventfds and an I/O thread (`--no-io-thread` turns it off).
    public var ioThread = true
    /// How long the I/O thread polls for doorbells before it sleeps (`--io-poll-us`).
    public var ioThreadPollMicroseconds = DoorbellPolling.defaultLimitMicroseconds
    /// Fault injection for tests (no CLI option): the translator's code cache size, so a test can
    /// make the host refuse it.
    var codeCacheBytes: Int?

    public init() {}
}

/// The disk benchmarks' image: by default disk.img (64 MiB, sparse) in the output folder.
public struct DiskSettings: Sendable {
    /// `--disk-image`: an existing raw image instead.
    public var imagePath: String?
    /// The user allowed write benchmarks to overwrite the region of an image hvbench did not create.
    public var overwrite = false
    /// `--direct`: O_DIRECT.
    public var direct = false
    /// How many sectors of the image the benchmarks use (nothing outside them).
    public var regionSectors: UInt64 = DiskSettings.defaultRegionSectors
    /// 16 MiB.
    public static let defaultRegionSectors: UInt64 = 32768

    public init() {}
}

/// The network benchmarks' far end.
public struct NetworkSettings: Sendable {
    /// `--net-backend`: a TAP into the host kernel (the default: the path users compare
    /// hypervisors on) or the in-VMM peer (VMM and device-model cost alone).
    public var backend: NetBackend = .tap
    /// Fault injection for tests (no CLI option): over the TAP, the kernel peer stops answering
    /// or sending after this many datagrams, as a hung far end would.
    var peerFallsSilentAfter: Int?

    public init() {}
}

/// A run, typed and complete: which systems (hvbench's and peers, from the registry) run which
/// benchmarks, for how many rounds in which order, and with what VMs, disk and network. It is
/// built once, from the CLI or a test, and drives everything after.
public struct RunPlan: Sendable {
    /// Every system measured, each once: the modes, then the peers.
    public var systems: [SystemDefinition]
    public var suite: Suite
    public var outputDirectory: URL
    /// Rounds: every (system, benchmark) pair runs once per round, in an order shuffled per round
    /// from `seed` (see `Schedule`). 1 keeps the listed order.
    public var rounds = 1
    public var seed: UInt64 = 0
    public var adaptive: AdaptivePolicy?
    public var placement = HostPlacement()
    public var vm = VMSettings()
    public var disk = DiskSettings()
    public var network = NetworkSettings()
    /// Fault injection for tests (no CLI option): containers start this program instead of the
    /// native runner, as a broken image would.
    var containerProgram: String?
    /// Lengthens every timed repetition by this percentage, in the guest and natively (self-check
    /// of regression detection); 0 in normal runs.
    public var slowdownPercent: UInt64 = 0
    /// The hvbench executable, for benchmarks that start VMs in processes of their own
    /// (mem.overcommit, whose cgroup charges whole processes); nil: they are skipped.
    public var vmExecutable: String?

    public init(systems: [SystemDefinition], suite: Suite, outputDirectory: URL) {
        var seen = Set<String>()
        self.systems = systems.filter { seen.insert($0.name).inserted }
        self.suite = suite
        self.outputDirectory = outputDirectory
    }
}

extension RunPlan {
    /// The vCPUs a guest running `benchmark` gets: `--vcpus`, or the benchmark's minimum if higher.
    public func vcpus(for benchmark: String) -> Int {
        max(vm.vcpus, BenchmarkDefinition.named(benchmark)?.minimumCPUs ?? 1)
    }

    /// How an emulator system runs guest code: its own pinned emulator, else the run's.
    public func emulator(for system: SystemDefinition) -> EmulatorKind? {
        guard case .vm(.emulator(let pinned), _) = system.runner else { return nil }
        return pinned ?? vm.emulator
    }
}

public enum ProgressEvent: Sendable {
    case starting(system: String, benchmark: String, index: Int, total: Int, repetitions: Int)
    /// A measured repetition arrived from the guest or native process.
    case sample
    case finished(BenchmarkResult)
    case notice(String)
}
