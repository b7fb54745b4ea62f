/// The benchmark ids (a contract: reports, claims and CI baselines refer to them) and how each
/// one's raw samples (operations, TSC cycles, bytes) become metrics.
public struct BenchmarkDefinition: Sendable, Equatable {
    public enum Group: String, Sendable, Codable { case cpu, platform, boot, network, disk, memory }

    /// How a benchmark is timed: by the workload inside one boot, or as whole boots (vm.boot,
    /// timed from outside by the VMM or from QEMU's start).
    public enum Timing: String, Sendable { case inGuest, wholeBoots }

    /// What the network peer (a kernel UDP socket behind the run's TAP by default, or the
    /// in-VMM / in-process peer with `--net-backend vmm`) does with the frames.
    public enum PeerRole: String, Sendable { case sink, source, echo }

    /// The guest a benchmark boots: hvbench's benchmark guest, the Linux guest (Debian's
    /// kernel and a busybox initramfs, `LinuxGuestBuilder`), or none: a container's start.
    public enum Guest: String, Sendable { case benchmarkGuest, linux, container }

    public let id: String
    public let group: Group
    public let summary: String
    public let defaultIterations: UInt64
    public let timing: Timing
    /// Network benchmarks: the peer's role.
    public let peerRole: PeerRole?
    /// Disk benchmarks that write (their image must be hvbench's own, or the user must allow
    /// overwriting it; the written region is verified afterwards).
    public let writesDisk: Bool
    /// Why QEMU cannot run this benchmark as a peer (nil: it can).
    public let qemuUnsupported: String?
    /// The vCPUs (natively: host CPUs) it needs at least: 2 for the SMP benchmarks.
    public let minimumCPUs: Int
    /// Network benchmarks whose far end is a second VM on a bridge (the TAP backend only); the
    /// peer role is that VM's part.
    public let vmToVM: Bool
    public let guest: Guest

    init(
        id: String, group: Group, summary: String, defaultIterations: UInt64, timing: Timing = .inGuest,
        peerRole: PeerRole? = nil, writesDisk: Bool = false, qemuUnsupported: String? = nil, minimumCPUs: Int = 1,
        vmToVM: Bool = false, guest: Guest = .benchmarkGuest
    ) {
        self.guest = guest
        self.minimumCPUs = minimumCPUs
        self.vmToVM = vmToVM
        self.id = id
        self.group = group
        self.summary = summary
        self.defaultIterations = defaultIterations
        self.timing = timing
        self.peerRole = peerRole
        self.writesDisk = writesDisk
        self.qemuUnsupported = qemuUnsupported
    }

    public static let all: [BenchmarkDefinition] = [
        .init(
            id: "cpu.int", group: .cpu, summary: "integer compute loop (xorshift + multiply), Mops/s",
            defaultIterations: 20_000_000),
        .init(id: "cpu.mem-bw", group: .cpu, summary: "sequential read bandwidth over 32 MiB, GiB/s", defaultIterations: 10),
        .init(
            id: "cpu.mem-lat", group: .cpu, summary: "random pointer chase over 64 MiB, ns per load", defaultIterations: 2_000_000
        ),
        .init(
            id: "cpu.callret", group: .cpu, summary: "call + ret of an out-of-line function, ns", defaultIterations: 20_000_000),
        .init(
            id: "cpu.syscall", group: .platform, summary: "syscall/sysret round trip to a null handler, ns",
            defaultIterations: 2_000),
        .init(
            id: "cpu.pgfault", group: .platform, summary: "#PF delivery on a not-present page and return, ns",
            defaultIterations: 500),
        .init(id: "cpu.divzero", group: .platform, summary: "#DE delivery and return, ns", defaultIterations: 500),
        .init(
            id: "cpu.ptemod", group: .platform, summary: "PTE write + kernel entry for invlpg + touch, ns", defaultIterations: 500
        ),
        .init(
            id: "cpu.cpuid", group: .platform, summary: "cpuid leaf 0 (always intercepted under VMX/SVM), ns",
            defaultIterations: 2_000),
        .init(
            id: "cpu.pio", group: .platform, summary: "in from an unclaimed port (exit to the VMM), ns", defaultIterations: 2_000),
        .init(
            id: "cpu.mmio", group: .platform, summary: "read of an unclaimed MMIO page (exit to the VMM), ns",
            defaultIterations: 2_000),
        .init(id: "cpu.hypercall", group: .platform, summary: "vmcall/vmmcall round trip, ns", defaultIterations: 2_000),
        .init(
            id: "vm.boot", group: .boot, summary: "VM created -> guest main at CPL3, ms (timed by the VMM)", defaultIterations: 1,
            timing: .wholeBoots),
        .init(
            id: "container.start", group: .boot,
            summary:
                "OCI runtime's create -> the native runner's first line inside the container, ms (timed by hvbench; container systems only)",
            defaultIterations: 1, timing: .wholeBoots, guest: .container),
        .init(
            id: "linux.boot", group: .boot,
            summary:
                "VM or QEMU started -> the Linux guest's /init shell says hello, ms (Debian's kernel, busybox initramfs); to_init: -> /init's boot milestone (hvbench's VMM)",
            defaultIterations: 1, timing: .wholeBoots, guest: .linux),
        .init(
            id: "linux.fio-randread", group: .disk,
            summary:
                "fio 4 KiB random reads, direct I/O, one synchronous job, in the Linux guest on its disk (natively on the image file); iterations: I/Os, IOPS",
            defaultIterations: 256, guest: .linux),
        .init(
            id: "linux.fio-randwrite", group: .disk,
            summary: "fio 4 KiB random writes as linux.fio-randread, each read back and checked (crc32c); iterations: I/Os, IOPS",
            defaultIterations: 256, writesDisk: true, guest: .linux),
        .init(
            id: "linux.fio-seqread", group: .disk,
            summary: "fio 1 MiB sequential reads as linux.fio-randread; iterations: MiB, MiB/s", defaultIterations: 16,
            guest: .linux),
        .init(
            id: "linux.iperf3-tx", group: .network,
            summary:
                "iperf3 TCP from the Linux guest to an iperf3 server in the run's namespace over the TAP (natively across a veth), as the server received it; iterations: KiB, Mbit/s",
            defaultIterations: 4096, peerRole: .echo, guest: .linux),
        .init(
            id: "linux.iperf3-rx", group: .network,
            summary: "iperf3 TCP from the server to the Linux guest (iperf3 -R) as linux.iperf3-tx; iterations: KiB, Mbit/s",
            defaultIterations: 4096, peerRole: .echo, guest: .linux),
        .init(
            id: "linux.udp-rr", group: .network,
            summary:
                "64-byte UDP request/response from a Linux process to the host kernel's echo socket over the TAP (natively across a veth), µs per round trip",
            defaultIterations: 200, peerRole: .echo, guest: .linux),
        .init(
            id: "linux.null-syscall", group: .platform,
            summary: "getppid() in a loop in the Linux guest (lmbench's null call), ns",
            defaultIterations: 100_000, guest: .linux),
        .init(
            id: "linux.pipe-ctxsw", group: .platform,
            summary: "one-byte pipe round trip between two processes on one CPU (two context switches, lmbench's lat_ctx), µs",
            defaultIterations: 2_000, guest: .linux),
        .init(
            id: "linux.page-fault", group: .platform,
            summary: "first write to a page of a fresh anonymous mapping (a zero-fill page fault), ns", defaultIterations: 2_000,
            guest: .linux),
        .init(
            id: "linux.fork-exit", group: .platform, summary: "fork() of a small static process, its _exit() and waitpid(), µs",
            defaultIterations: 200, guest: .linux),
        .init(
            id: "linux.mmap-munmap", group: .platform,
            summary: "mmap of 1 MiB anonymous, a write every 64 KiB, munmap (lmbench's lat_mmap), µs", defaultIterations: 500,
            guest: .linux),
        .init(
            id: "linux.compress", group: .cpu,
            summary:
                "zlib level 6 compressing a fixed 1 MiB text-like buffer and decompressing it to check (CPU and memory bound); iterations: passes, MiB/s",
            defaultIterations: 4, guest: .linux),
        .init(
            id: "irq.timer", group: .platform,
            summary: "local APIC one-shot timer armed to expire at once -> its handler ran, interrupts taken at CPL3, ns",
            defaultIterations: 500),
        .init(
            id: "cpu.ipi-self", group: .platform,
            summary: "self-IPI: a fixed IPI to this CPU written to the local APIC's ICR -> its handler ran, ns",
            defaultIterations: 500),
        .init(
            id: "cpu.ipi", group: .platform,
            summary:
                "IPI round trip: a fixed IPI to the other vCPU, busy at CPL3 with interrupts on, whose handler answers with an IPI -> the answer's handler ran, ns",
            defaultIterations: 200, minimumCPUs: 2),
        .init(
            id: "cpu.ipi-halt", group: .platform,
            summary: "cpu.ipi with the other vCPU waiting in hlt (the idle loop of an OS), ns", defaultIterations: 200,
            minimumCPUs: 2),
        .init(
            id: "cpu.tlb-shootdown", group: .platform,
            summary:
                "PTE change + local invlpg + IPI to the other vCPU, which invalidates, reads the new frame and acknowledges (natively: mprotect read-only and back of a page two threads touch), ns",
            defaultIterations: 200, minimumCPUs: 2),
        .init(
            id: "cpu.cacheline-pingpong", group: .platform,
            summary: "a cache line handed to the other vCPU and back with locked adds (two pinned threads natively), ns",
            defaultIterations: 20_000, minimumCPUs: 2),
        .init(
            id: "irq.hlt-wake", group: .platform,
            summary: "hlt until a TSC-deadline timer interrupt: deadline -> first instruction after hlt, ns",
            defaultIterations: 200),
        .init(
            id: "net.tx-64", group: .network,
            summary: "transmit 64-byte frames to the sink (a kernel UDP socket behind a TAP), kframes/s",
            defaultIterations: 5_000, peerRole: .sink),
        .init(
            id: "net.tx-1500", group: .network,
            summary: "transmit 1514-byte frames to the sink (a kernel UDP socket behind a TAP), Gbit/s",
            defaultIterations: 5_000,
            peerRole: .sink),
        .init(
            id: "net.rx-1500", group: .network,
            summary: "receive 1514-byte frames from the source (a kernel UDP socket behind a TAP), Gbit/s",
            defaultIterations: 5_000, peerRole: .source,
            qemuUnsupported: "QEMU's network backends have no frame source to receive from"),
        .init(
            id: "net.rr", group: .network,
            summary: "64-byte request/response through the echo (a kernel UDP socket behind a TAP), ns (p50/p99)",
            defaultIterations: 500, peerRole: .echo),
        .init(
            id: "net.tx-1500-irq", group: .network,
            summary: "net.tx-1500 with interrupt-driven drivers (completions taken back after interrupts), Gbit/s",
            defaultIterations: 5_000, peerRole: .sink),
        .init(
            id: "net.tx-1500-irq-moderated", group: .network,
            summary:
                "net.tx-1500-irq with Linux's interrupt moderation (e1000 ITR at 4000 interrupts/s, where Linux settles for bulk traffic; virtio-net's event index), Gbit/s",
            defaultIterations: 5_000, peerRole: .sink),
        .init(
            id: "net.rr-irq", group: .network,
            summary: "net.rr with interrupt-driven drivers (the response wakes the guest by interrupt), ns (p50/p99)",
            defaultIterations: 500, peerRole: .echo),
        .init(
            id: "net.rr-irq-intx", group: .network,
            summary:
                "net.rr-irq with virtio-net on its legacy INTx line and ISR instead of MSI-X (the e1000 as in net.rr-irq), ns (p50/p99)",
            defaultIterations: 500, peerRole: .echo),
        .init(
            id: "net.vm2vm-rr", group: .network,
            summary: "64-byte request/response to a second VM across a Linux bridge (its guest echoes), ns (p50/p99)",
            defaultIterations: 500, peerRole: .echo, vmToVM: true),
        .init(
            id: "net.vm2vm-tx-1500", group: .network,
            summary:
                "1514-byte frames streamed by a second VM across a Linux bridge, as they arrive (UDP_STREAM's receiving side), Gbit/s",
            defaultIterations: 5_000, peerRole: .source, vmToVM: true),
        .init(
            id: "disk.seq-read", group: .disk, summary: "sequential 64 KiB reads from a raw image, MiB/s", defaultIterations: 16),
        .init(
            id: "disk.seq-write", group: .disk, summary: "sequential 64 KiB writes, MiB/s", defaultIterations: 16,
            writesDisk: true),
        .init(id: "disk.rand-read-4k", group: .disk, summary: "random 4 KiB reads, IOPS", defaultIterations: 100),
        .init(
            id: "disk.rand-write-4k", group: .disk, summary: "random 4 KiB writes, IOPS", defaultIterations: 100, writesDisk: true
        ),
        .init(
            id: "disk.lat-4k", group: .disk, summary: "4 KiB read latency at queue depth 1, ns (p50/p99)", defaultIterations: 100),
        .init(
            id: "disk.rand-read-4k-irq", group: .disk,
            summary: "disk.rand-read-4k with interrupt-driven drivers (IDE: bus-master DMA and IRQ 14), IOPS",
            defaultIterations: 100),
        .init(
            id: "disk.lat-4k-irq", group: .disk,
            summary: "disk.lat-4k with interrupt-driven drivers (the completion interrupt wakes the guest), ns (p50/p99)",
            defaultIterations: 100),
        .init(
            id: "mem.balloon-inflate", group: .memory,
            summary:
                "the guest gives resident pages to the host through virtio-balloon (256 frame numbers a buffer, as Linux's driver); iterations: 4 KiB pages, MiB/s; guest RAM resident on the host before and after (hvbench's VMM)",
            defaultIterations: 4096),
        .init(
            id: "mem.balloon-deflate", group: .memory,
            summary: "the guest takes ballooned pages back (told to the device before it touches them); iterations: pages, MiB/s",
            defaultIterations: 4096),
        .init(
            id: "mem.balloon-refault", group: .memory,
            summary:
                "first write to each page just taken back from the balloon (the host faults in a fresh page), ns per page; residency before and after",
            defaultIterations: 4096),
        .init(
            id: "mem.balloon-reclaim", group: .memory,
            summary:
                "the host asks the balloon for the guest's spare pages (num_pages, as QMP's balloon does) and times it until the device has them and the driver reports them (actual), then gives them back; iterations: pages, MiB/s; guest RAM (QEMU: the process) resident before and after",
            defaultIterations: 4096),
        .init(
            id: "linux.balloon-reclaim", group: .memory,
            summary:
                "mem.balloon-reclaim with the Linux guest's own virtio_balloon driver taking the pages from Linux's free memory; iterations: pages, MiB/s",
            defaultIterations: 4096, guest: .linux),
        .init(
            id: "mem.overcommit", group: .memory,
            summary:
                "3 VMs, each in a process of its own writing a pool of `iterations` pages, in a memory cgroup that holds them only if each balloons half its pool: without ballooning the OOM killer must end one; with it (the host asks the running VMs before each start) all 3 run; VMs alive each way, the cgroup's peak (MiB), time spent ballooning (ms)",
            defaultIterations: 8192,
            qemuUnsupported: "the overcommit scenario starts hvbench's own VMs, each in a process of its own"),
        .init(
            id: "mem.page-sharing", group: .memory,
            summary:
                "--sharing-vms VMs (4) fill the same content, their RAM offered to KSM: host memory saved (MiB, share of what could be), time to 90% merged, and each guest's first write to every merged page (copy-on-write break, ns per page; not under QEMU, whose RAM hvbench cannot write to tell its guest); iterations: pages per VM",
            defaultIterations: 2048
        ),
    ]

    public var needsNIC: Bool { group == .network }
    public var needsDisk: Bool { group == .disk }
    /// The balloon benchmarks: the VM (or QEMU) gets a virtio-balloon.
    public var needsBalloon: Bool { id.hasPrefix("mem.balloon-") || id == "linux.balloon-reclaim" }
    /// Benchmarks the host times by driving the guest's balloon (`mem.balloon-reclaim`).
    public var hostDrivenBalloon: Bool { id.hasSuffix("balloon-reclaim") }

    public static func named(_ id: String) -> BenchmarkDefinition? { all.first { $0.id == id } }

    public static func unknown(_ id: String) -> String {
        "unknown benchmark '\(id)'; known: \(all.map(\.id).joined(separator: ", "))"
    }
}

/// One metric's samples before summarising.
public struct MetricSamples: Sendable, Equatable {
    public let name: String
    public let unit: String
    public let better: Better
    public let values: [Double]

    public init(name: String, unit: String, better: Better, values: [Double]) {
        self.name = name
        self.unit = unit
        self.better = better
        self.values = values
    }
}

public enum Better: String, Codable, Sendable { case higher, lower }

public enum MetricDerivation {
    /// vm.boot's metrics from per-boot times in milliseconds: to the guest's main at CPL3 and,
    /// where the VMM sees it (not under QEMU), to the guest's first instruction.
    /// container.start's metric from per-start times in milliseconds.
    public static func startMetrics(_ milliseconds: [Double]) -> [MetricSamples] {
        [MetricSamples(name: "start_time", unit: "ms", better: .lower, values: milliseconds)]
    }

    public static func bootMetrics(toMain: [Double], toFirstInstruction: [Double]?) -> [MetricSamples] {
        [MetricSamples(name: "boot_time", unit: "ms", better: .lower, values: toMain)]
            + (toFirstInstruction.map { [MetricSamples(name: "to_first_instruction", unit: "ms", better: .lower, values: $0)] }
                ?? [])
    }

    /// Converts guest samples into metrics. `tscHertz` converts cycles to time.
    public static func metrics(for benchmark: String, samples: [BenchmarkTranscript.Sample], tscHertz: Double) -> [MetricSamples]
    {
        let nanoseconds = samples.map { Double($0.cycles) / tscHertz * 1e9 }
        if benchmark.hasPrefix("linux.") { return linuxMetrics(for: benchmark, samples: samples, nanoseconds: nanoseconds) }
        let nsPerOp = zip(samples, nanoseconds).map { $1 / Double($0.operations) }
        let cyclesPerOp = samples.map { Double($0.cycles) / Double($0.operations) }
        let perOp = [
            MetricSamples(name: "ns_per_op", unit: "ns", better: .lower, values: nsPerOp),
            MetricSamples(name: "cycles_per_op", unit: "cycles", better: .lower, values: cyclesPerOp),
        ]
        switch benchmark {
        case "cpu.int":
            let mops = zip(samples, nanoseconds).map { Double($0.operations) / $1 * 1e3 }
            return [MetricSamples(name: "throughput", unit: "Mops/s", better: .higher, values: mops)] + perOp
        case "cpu.mem-bw":
            let gibPerSecond = zip(samples, nanoseconds).map { Double($0.bytes) / ($1 / 1e9) / 1_073_741_824 }
            return [MetricSamples(name: "bandwidth", unit: "GiB/s", better: .higher, values: gibPerSecond)]
        case "cpu.mem-lat":
            return [
                MetricSamples(name: "latency", unit: "ns", better: .lower, values: nsPerOp),
                MetricSamples(name: "cycles_per_op", unit: "cycles", better: .lower, values: cyclesPerOp),
            ]
        case "net.tx-64", "net.tx-1500", "net.rx-1500", "net.tx-1500-irq", "net.tx-1500-irq-moderated", "net.vm2vm-tx-1500":
            let frames = zip(samples, nanoseconds).map { Double($0.operations) / $1 * 1e6 }
            let gbits = zip(samples, nanoseconds).map { Double($0.bytes) * 8 / $1 }
            let rate = MetricSamples(name: "frame_rate", unit: "kframes/s", better: .higher, values: frames)
            let bandwidth = MetricSamples(name: "bandwidth", unit: "Gbit/s", better: .higher, values: gbits)
            return (benchmark == "net.tx-64" ? [rate, bandwidth] : [bandwidth, rate]) + [perOp[0]]
        case "disk.seq-read", "disk.seq-write":
            let mibPerSecond = zip(samples, nanoseconds).map { Double($0.bytes) / ($1 / 1e9) / 1_048_576 }
            return [MetricSamples(name: "bandwidth", unit: "MiB/s", better: .higher, values: mibPerSecond), perOp[0]]
        case "mem.balloon-inflate", "mem.balloon-deflate":
            let mibPerSecond = zip(samples, nanoseconds).map { Double($0.bytes) / ($1 / 1e9) / 1_048_576 }
            return [MetricSamples(name: "bandwidth", unit: "MiB/s", better: .higher, values: mibPerSecond), perOp[0]]
        case "disk.rand-read-4k", "disk.rand-write-4k", "disk.rand-read-4k-irq":
            let iops = zip(samples, nanoseconds).map { Double($0.operations) / ($1 / 1e9) }
            return [MetricSamples(name: "iops", unit: "IOPS", better: .higher, values: iops), perOp[0]]
        default:
            return perOp
        }
    }

    /// The balloon benchmarks' host-side figures: guest RAM resident on the host at the probes
    /// before (code 0x40) and after (0x41) each timed part, in MiB, for the last `repetitions`
    /// repetitions (the warm-ups probe too). None where the probes are missing (QEMU ignores
    /// the port) or fewer than the repetitions.
    /// The host-driven balloon's metrics from per-request times (ms) and residency (MiB):
    /// `bandwidth` (MiB/s of `pages` reclaimed), the reclaim and return times, and the memory
    /// resident before and after each reclaim under `residentName` (guest RAM, or QEMU's process).
    public static func reclaimMetrics(
        pages: UInt64, reclaimMilliseconds: [Double], returnMilliseconds: [Double], residentBefore: [Double],
        residentAfter: [Double], residentName: String
    ) -> [MetricSamples] {
        let mebibytes = Double(pages) * 4096 / 1_048_576
        var metrics = [
            MetricSamples(
                name: "bandwidth", unit: "MiB/s", better: .higher, values: reclaimMilliseconds.map { mebibytes / ($0 / 1000) }),
            MetricSamples(name: "reclaim_time", unit: "ms", better: .lower, values: reclaimMilliseconds),
            MetricSamples(name: "return_time", unit: "ms", better: .lower, values: returnMilliseconds),
        ]
        if !residentBefore.isEmpty && residentBefore.count == residentAfter.count {
            metrics += [
                MetricSamples(name: "\(residentName)_before", unit: "MiB", better: .lower, values: residentBefore),
                MetricSamples(name: "\(residentName)_after", unit: "MiB", better: .lower, values: residentAfter),
            ]
        }
        return metrics
    }

    public static func residencyMetrics(_ probes: [(code: UInt8, bytes: UInt64)], repetitions: Int) -> [MetricSamples] {
        let mebibytes = { (code: UInt8) in probes.filter { $0.code == code }.map { Double($0.bytes) / 1_048_576 } }
        let before = mebibytes(0x40)
        let after = mebibytes(0x41)
        guard repetitions > 0, before.count >= repetitions, after.count >= repetitions else { return [] }
        return [
            MetricSamples(name: "resident_before", unit: "MiB", better: .lower, values: Array(before.suffix(repetitions))),
            MetricSamples(name: "resident_after", unit: "MiB", better: .lower, values: Array(after.suffix(repetitions))),
        ]
    }

    /// The Linux workloads time in nanoseconds (CLOCK_MONOTONIC, or fio's and iperf3's own
    /// figures), so they have no cycle metric.
    static func linuxMetrics(for benchmark: String, samples: [BenchmarkTranscript.Sample], nanoseconds: [Double])
        -> [MetricSamples]
    {
        /// Each sample's operations or bytes per second.
        func perSecond(_ amount: (BenchmarkTranscript.Sample) -> Double) -> [Double] {
            zip(samples, nanoseconds).map { amount($0) / ($1 / 1e9) }
        }
        let nanosecondsPerOperation = zip(samples, nanoseconds).map { $1 / Double($0.operations) }
        let latencyInMicroseconds = MetricSamples(
            name: "latency", unit: "µs", better: .lower, values: nanosecondsPerOperation.map { $0 / 1e3 })
        switch benchmark {
        case "linux.fio-randread", "linux.fio-randwrite":
            let iops = perSecond { Double($0.operations) }
            return [MetricSamples(name: "iops", unit: "IOPS", better: .higher, values: iops), latencyInMicroseconds]
        case "linux.fio-seqread", "linux.compress":
            let mibPerSecond = perSecond { Double($0.bytes) / 1_048_576 }
            return [MetricSamples(name: "bandwidth", unit: "MiB/s", better: .higher, values: mibPerSecond)]
        case "linux.iperf3-tx", "linux.iperf3-rx":
            let megabits = perSecond { Double($0.bytes) * 8 / 1e6 }
            return [MetricSamples(name: "bandwidth", unit: "Mbit/s", better: .higher, values: megabits)]
        case "linux.null-syscall", "linux.page-fault":
            return [MetricSamples(name: "latency", unit: "ns", better: .lower, values: nanosecondsPerOperation)]
        default:
            return [latencyInMicroseconds]
        }
    }
}
