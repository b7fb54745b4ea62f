import Foundation
import VMTypes
import Synchronization

/// How a VM run ended.
public enum VMEnding: Equatable, Sendable {
    /// The guest wrote the debug-exit port; status is `(value << 1) | 1`.
    case exitDevice(status: Int32)
    case halted
    /// The guest turned the machine off through ACPI (sleep state S5).
    case poweredOff
    /// The guest reset the machine (a reboot, through the keyboard controller): VMs do not restart.
    case reset
    case shutdown(String)
    /// The watchdog stopped a guest that ran longer than its time limit.
    case timedOut(seconds: Double)
    /// hvbench stopped a guest that serves another (the far end of a VM-to-VM benchmark).
    case stoppedByHost
    case failed(String)

    public var summary: String {
        switch self {
        case .exitDevice(let status): return "guest exited with status \(status)"
        case .halted: return "guest halted with interrupts disabled"
        case .poweredOff: return "guest powered off (ACPI S5)"
        case .reset: return "guest reset the machine (a reboot; the VM does not restart)"
        case .shutdown(let why): return "guest shut down: \(why)"
        case .timedOut(let seconds):
            return "watchdog stopped the guest after \(String(format: "%.1f", seconds)) s (it neither exited nor halted)"
        case .stoppedByHost: return "stopped by hvbench once the guest it served had finished"
        case .failed(let why): return "VM failed: \(why)"
        }
    }
}

/// A request from hvbench to stop a running VM early (`VirtualMachine.run(hostStop:)`).
public final class HostStopRequest: Sendable {
    private let requested = Atomic<Bool>(false)
    public init() {}
    public func request() { requested.store(true, ordering: .releasing) }
    public var isRequested: Bool { requested.load(ordering: .acquiring) }
}

public struct VMOutcome: Sendable {
    public let ending: VMEnding
    /// The host CPU each vCPU thread last ran on (vCPU order), for checking placement.
    public var vcpuHostCPUs: [Int] = []
    public let milestones: [BootMilestoneDevice.Milestone]
    public let counters: ExitCounters
    /// The counters as they stood when the guest wrote each milestone (the first write of each
    /// code; the writing vCPU's exits, the VM's device counts): a workload's exits are those
    /// between the milestones around it (`ExitCounters.since`).
    public var countersAtMilestones: [UInt8: ExitCounters] = [:]
    /// When the bootstrap processor's host thread began running (nil: it never did).
    public var bootstrapThreadStartedAtNanoseconds: UInt64?
    public let startedAtNanoseconds: UInt64
    public let endedAtNanoseconds: UInt64
}

/// One guest: its RAM, its buses and devices, and the CPU engine that runs it.
///
/// `run` drives the engine on a dedicated vCPU thread while the calling thread acts as the
/// watchdog: past the deadline it asks the engine to stop, and the run ends as `timedOut`
/// instead of hanging the benchmark suite.
public final class VirtualMachine: @unchecked Sendable {
    public let memory: GuestMemory
    /// The bootstrap processor.
    public let engine: any CPUEngine
    public let portBus = IOBus()
    public let mmioBus = IOBus()
    public let milestones = BootMilestoneDevice()
    public private(set) var counters = ExitCounters()
    /// What devices plug into (`add(_:)`).
    public let platform: Platform
    /// The devices added with `add(_:)`, in order.
    public private(set) var devices: [any Device] = []

    private let startedAt: UInt64
    /// How the guest itself ended the machine (debug exit, ACPI power-off, reset), first one wins.
    private var guestEnding: VMEnding?
    /// Set when the guest turned the machine off through ACPI (S5).
    /// Set by the watchdog, read by the vCPU thread when the engine returns `.interrupted`.
    private let stopRequested = Atomic<Bool>(false)
    /// Set when one vCPU ended the guest, for the others.
    private let guestEnded = Atomic<Bool>(false)
    /// Serialises device work between vCPU threads, as QEMU's big lock does: device models are
    /// written for one thread at a time. Not taken with one vCPU.
    private let deviceLock = Mutex(())
    private let countersAtMilestones = Mutex<[UInt8: ExitCounters]>([:])
    /// When the bootstrap processor's thread began running (0: not yet), for the start-up phases.
    private let bootstrapThreadStartedAt = Atomic<UInt64>(0)
    /// Every vCPU: `engine` (the bootstrap processor) first, then the application processors.
    public let processors: [any CPUEngine]

    /// - Parameters:
    ///   - startedAt: monotonic time at which building this VM began (for boot timing).
    ///   - routesDoorbells: whether doorbells go to the engine's I/O thread where it has one.
    ///   - ioThreadPollMicroseconds: how long that thread polls for doorbells before it sleeps.
    ///   - vcpus: how many vCPUs; the others wait for the guest to start them (INIT-SIPI-SIPI).
    ///   - console: receives each byte the guest writes to COM1.
    public init(
        memory: GuestMemory, engine: any CPUEngine, startedAt: UInt64, routesDoorbells: Bool = true,
        ioThreadPollMicroseconds: UInt64 = DoorbellPolling.defaultLimitMicroseconds,
        vcpus: Int = 1, console: @escaping (UInt8) -> Void
    ) throws {
        self.memory = memory
        self.engine = engine
        self.startedAt = startedAt
        processors = [engine] + (vcpus > 1 ? try engine.makeApplicationProcessors(count: vcpus - 1) : [])
        platform = Platform(
            memory: memory, portBus: portBus, mmioBus: mmioBus, interrupts: try engine.connectInterrupts(mmioBus: mmioBus),
            doorbells: routesDoorbells
                ? engine.makeDoorbellRouter(
                    pollLimitNanoseconds: min(ioThreadPollMicroseconds, DoorbellPolling.limitMicroseconds.upperBound) * 1000)
                : nil,
            coalescedWrites: engine.makeWriteCoalescer())
        // A device timer that comes due while the guest runs brings the vCPU thread out of the
        // engine, which then runs it (see `vcpuLoop`).
        let kick = EngineKick(engine: engine)
        platform.timers.setWake { kick.engine.requestStop() }
        let serial = Serial16550(
            transmit: console,
            interruptLine: InterruptLine(gsi: Serial16550.interruptInput, controller: platform.interrupts))
        try portBus.insert(serial, at: Serial16550.com1Base, length: Serial16550.registerCount)
        try portBus.insert(
            DebugExitDevice { [unowned self] status in self.guestEnds(.exitDevice(status: status)) }, at: DebugExitDevice.port,
            length: 4)
        milestones.residentBytes = { [memory] in memory.residentBytes }
        try portBus.insert(milestones, at: BootMilestoneDevice.port, length: 1)
        try portBus.insert(CMOSClock(memorySize: memory.size), at: CMOSClock.base, length: CMOSClock.length)
        let timer = ProgrammableIntervalTimer()
        try portBus.insert(timer, at: ProgrammableIntervalTimer.base, length: ProgrammableIntervalTimer.length)
        try portBus.insert(SystemControlPort(timer: timer), at: SystemControlPort.port, length: 1)
        try portBus.insert(ACPIPMTimer(), at: UInt64(FirmwareTables.pmTimerPort), length: ACPIPMTimer.length)
        try portBus.insert(
            ACPIPowerControl { [unowned self] in self.guestEnds(.poweredOff) }, at: UInt64(FirmwareTables.pm1aEventPort),
            length: ACPIPowerControl.length)
        try portBus.insert(
            KeyboardControllerReset { [unowned self] in self.guestEnds(.reset) }, at: KeyboardControllerReset.port,
            length: 1)
    }

    /// Called by the devices through which a guest ends the machine (under the device lock).
    private func guestEnds(_ ending: VMEnding) {
        if guestEnding == nil { guestEnding = ending }
    }

    /// Places a device on this VM's platform.
    public func add(_ device: any Device) throws {
        try device.attach(to: platform)
        devices.append(device)
    }

    /// Doorbells rung on every device so far.
    public var notifications: Int { devices.reduce(0) { $0 + $1.doorbells } }
    /// Interrupt-cause register reads on every device so far.
    public var interruptCauseReads: Int { devices.reduce(0) { $0 + $1.interruptCauseReads } }

    /// Devices the guest drove into an error state, each with its name and the reason.
    public var brokenDevices: [String] { devices.compactMap { device in device.brokenReason.map { "\(device.name): \($0)" } } }

    /// What happens when the watchdog cannot stop a vCPU thread. The thread still runs guest
    /// code in memory that would be freed when `run` returns, so the process cannot go on
    /// safely: by default it says why on stderr and exits with status 70 (EX_SOFTWARE). Tests
    /// install a handler that lets the stuck engine finish instead.
    public static let unstoppableVCPUHandler = Mutex<@Sendable (String) -> Void>({ reason in
        FileHandle.standardError.write(Data("hvbench: \(reason); exiting, since the VM cannot be torn down safely\n".utf8))
        exit(70)
    })

    /// Runs the guest to its end or until `timeout` seconds pass: one thread per vCPU, and the
    /// first vCPU that ends the guest (exit port, power-off, shutdown, failure) stops the others.
    /// - Parameters:
    ///   - numaNode: when given, the vCPU threads run on that node's CPUs.
    ///   - pinnedCPUs: when given, vCPU thread i runs on `pinnedCPUs[i % count]` alone.
    /// - Parameter hostStop: ends the run as `.stoppedByHost` when requested (the watchdog's
    ///   stop, early), for a guest that serves another until that one has finished.
    public func run(timeout: Double, numaNode: Int? = nil, pinnedCPUs: [Int]? = nil, hostStop: HostStopRequest? = nil)
        -> VMOutcome
    {
        let group = DispatchGroup()
        // Written by the vCPU threads before they leave `group`, read here after the wait.
        let ending = Mutex<VMEnding?>(nil)
        let perProcessor = Mutex<[ExitCounters]>(Array(repeating: ExitCounters(), count: processors.count))
        let hostCPUs = Mutex<[Int]>(Array(repeating: -1, count: processors.count))
        for index in processors.indices {
            group.enter()
            let vcpu: @Sendable () -> Void = { [self] in
                var local = ExitCounters()
                let result: VMEnding
                do {
                    if let numaNode { try NUMAPlacement.bindCurrentThread(to: numaNode) }
                    if let pinnedCPUs, !pinnedCPUs.isEmpty {
                        try NUMAPlacement.pinCurrentThread(to: pinnedCPUs[index % pinnedCPUs.count])
                    }
                    result = vcpuLoop(index, &local)
                } catch {
                    result = .failed("\(error)")
                }
                perProcessor.withLock { $0[index] = local }
                let cpu = NUMAPlacement.currentCPU
                hostCPUs.withLock { $0[index] = cpu }
                let first = ending.withLock { current in
                    guard current == nil else { return false }
                    current = result
                    return true
                }
                if first {
                    guestEnded.store(true, ordering: .releasing)
                    for (other, processor) in processors.enumerated() where other != index { processor.requestStop() }
                }
                group.leave()
            }
            do {
                try HostThread.start(name: "hvbench-vcpu\(index)", vcpu)
            } catch {
                ending.withLock { $0 = $0 ?? .failed("vCPU \(index): \(error)") }
                for processor in processors { processor.requestStop() }
                group.leave()
            }
        }

        let deadline = DispatchTime.now() + timeout
        var waited = group.wait(timeout: hostStop == nil ? deadline : min(deadline, .now() + 0.02))
        while waited == .timedOut, let hostStop, !hostStop.isRequested, DispatchTime.now() < deadline {
            waited = group.wait(timeout: min(deadline, .now() + 0.02))
        }
        if waited == .timedOut {
            stopRequested.store(true, ordering: .releasing)
            // A vCPU may be between KVM_RUN calls when the first request lands; repeat until all stop.
            var stopped = false
            for _ in 0..<500 where !stopped {
                for processor in processors { processor.requestStop() }
                stopped = group.wait(timeout: .now() + 0.01) == .success
            }
            if !stopped {
                let reason =
                    "the watchdog fired after \(timeout) s but a vCPU thread did not stop within 5 s of repeated stop requests"
                Self.unstoppableVCPUHandler.withLock { $0 }(reason)
                // Only reached when the handler did not end the process: the thread still runs
                // guest code in this VM's memory, which must outlive it.
                group.wait()
                platform.doorbells?.shutdown()
                platform.timers.shutdown()
                return VMOutcome(
                    ending: .failed(reason), milestones: milestones.milestones, counters: counters,
                    startedAtNanoseconds: startedAt, endedAtNanoseconds: MonotonicClock.nanoseconds())
            }
            let byHost = hostStop?.isRequested == true && DispatchTime.now() < deadline
            ending.withLock { $0 = byHost ? .stoppedByHost : .timedOut(seconds: timeout) }
        }
        // No device work may run once the vCPUs have stopped: the guest's memory goes with the VM.
        platform.doorbells?.shutdown()
        platform.timers.shutdown()
        counters = perProcessor.withLock { all in all.dropFirst().reduce(into: all[0]) { $0.add($1) } }
        applyCoalescedWrites(&counters)  // the last ones, so device state and counters are complete
        counters = withDeviceCounts(counters)
        if processors.count > 1 {
            let interruptCounts = processors.compactMap(\.interruptCounts)
            let each = perProcessor.withLock { $0 }
            counters.perVCPU = each.indices.map { index in
                VCPUExitCounters(
                    portIO: each[index].portIO, mmio: each[index].mmio, halts: each[index].halts,
                    interruptions: each[index].interruptions,
                    interrupts: interruptCounts.count == processors.count ? interruptCounts[index].taken : nil)
            }
        }
        var outcome = VMOutcome(
            ending: ending.withLock { $0 } ?? .failed("no vCPU thread ended"), milestones: milestones.milestones,
            counters: counters, startedAtNanoseconds: startedAt, endedAtNanoseconds: MonotonicClock.nanoseconds())
        outcome.vcpuHostCPUs = hostCPUs.withLock { $0 }
        outcome.countersAtMilestones = countersAtMilestones.withLock { $0 }
        let threadStarted = bootstrapThreadStartedAt.load(ordering: .relaxed)
        outcome.bootstrapThreadStartedAtNanoseconds = threadStarted == 0 ? nil : threadStarted
        return outcome
    }

    /// After the guest wrote to the milestone port: the counters as they stand, kept for the
    /// first milestone of each code the write recorded (none once the device stopped recording;
    /// a guest that writes the port as an I/O delay repeats codes, which cost only the lookup).
    private func keepCounters(afterMilestonesBeyond count: Int, _ exits: ExitCounters) {
        let recorded = milestones.milestones
        guard recorded.count > count, let code = recorded.last?.code,
            countersAtMilestones.withLock({ $0[code] == nil })
        else { return }
        let snapshot = withDeviceCounts(exits)
        countersAtMilestones.withLock { $0[code] = $0[code] ?? snapshot }
    }

    /// `exits` (the vCPUs' own counts) with what the VM and its devices counted so far.
    private func withDeviceCounts(_ exits: ExitCounters) -> ExitCounters {
        var counters = exits
        counters.unclaimedPortReads = portBus.unclaimedReads
        counters.unclaimedMMIOReads = mmioBus.unclaimedReads
        counters.notifications = notifications
        counters.interruptCauseReads = interruptCauseReads
        if let router = platform.doorbells {
            counters.ioThreadNotifications = devices.reduce(0) { $0 + $1.ioThreadDoorbells }
            counters.ioThreadPolledNotifications = router.polledEvents
        }
        counters.interruptsByEventFD = engine.interruptsByEventFD
        let interruptCounts = processors.compactMap(\.interruptCounts)
        if interruptCounts.count == processors.count {
            counters.interrupts = interruptCounts.reduce(0) { $0 + $1.taken }
            let endOfInterrupts = interruptCounts.compactMap(\.endOfInterrupts)
            counters.endOfInterrupts = endOfInterrupts.count == processors.count ? endOfInterrupts.reduce(0, +) : nil
        }
        return counters
    }

    private func applyCoalescedWrites(_ counters: inout ExitCounters) {
        guard let buffer = platform.coalescedWrites else { return }
        let applied = buffer.drain { address, data in mmioBus.write(address, from: data) }
        counters.coalescedWrites = (counters.coalescedWrites ?? 0) + applied
    }

    /// With one vCPU there is nothing to serialise, and the emulator's exits are cheap enough
    /// for a lock to show: take it only with more than one.
    @inline(__always) private func withDevices<T: Sendable>(_ body: () -> T) -> T {
        processors.count > 1 ? deviceLock.withLock { _ in body() } : body()
    }

    /// One vCPU's loop. Device work (exits, buffered writes, and device timers, which the
    /// bootstrap processor runs) happens under `deviceLock`, so device models see one thread at
    /// a time whichever vCPU exits.
    private func vcpuLoop(_ index: Int, _ counters: inout ExitCounters) -> VMEnding {
        let processor = processors[index]
        if index == 0 { bootstrapThreadStartedAt.store(MonotonicClock.nanoseconds(), ordering: .relaxed) }
        while true {
            // Device timers that came due (what woke the engine, or due by chance at an exit)
            // run before the guest resumes; one of them, or another vCPU, may have ended it.
            let ended = withDevices {
                if index == 0, let deadline = platform.timers.nextDeadline, deadline <= platform.timers.now() {
                    platform.timers.runDue()
                }
                return guestEnding
            }
            if let ended { return ended }
            let exit: VMExit
            do {
                exit = try processor.run()
            } catch {
                return .failed("\(error)")
            }
            switch exit {
            case .portIO(let access):
                counters.portIO += 1
                withDevices {
                    // Buffered writes come before whatever made the guest exit, as it issued them.
                    applyCoalescedWrites(&counters)
                    let marksMilestone = access.isWrite && UInt64(access.port) == BootMilestoneDevice.port
                    let milestonesBefore = marksMilestone ? milestones.milestones.count : 0
                    for index in 0..<access.count {
                        let data = UnsafeMutableRawBufferPointer(start: access.data + index * access.size, count: access.size)
                        if access.isWrite {
                            portBus.write(UInt64(access.port), from: UnsafeRawBufferPointer(data))
                        } else {
                            portBus.read(UInt64(access.port), into: data)
                        }
                    }
                    if marksMilestone { keepCounters(afterMilestonesBeyond: milestonesBefore, counters) }
                }
            case .mmio(let access):
                counters.mmio += 1
                withDevices {
                    applyCoalescedWrites(&counters)
                    let data = UnsafeMutableRawBufferPointer(start: access.data, count: access.size)
                    if access.isWrite {
                        mmioBus.write(access.address, from: UnsafeRawBufferPointer(data))
                    } else {
                        mmioBus.read(access.address, into: data)
                    }
                }
            case .halt:
                counters.halts += 1
                // The emulator halted with nothing of its own to wake it, but a device will
                // raise an interrupt later: sleep until then (bounded by the watchdog's checks).
                guard let deadline = platform.timers.nextDeadline else { return .halted }
                let now = platform.timers.now()
                if deadline > now { usleep(useconds_t(min((deadline - now) / 1000 + 1, 10_000))) }
                if stopRequested.load(ordering: .acquiring) { return .timedOut(seconds: 0) }
            case .shutdown(let why):
                return .shutdown(why)
            case .interrupted:
                counters.interruptions += 1
                if stopRequested.load(ordering: .acquiring) { return .timedOut(seconds: 0) }
                // Another vCPU ended the guest: its ending is the VM's.
                if guestEnded.load(ordering: .acquiring) { return .halted }
            // Otherwise a device timer's wake: its action runs at the top of the loop, before the
            // guest resumes.
            }
        }
    }
}

/// The engine, for the device timers' waker thread: `requestStop()` is thread-safe on every
/// engine.
private struct EngineKick: @unchecked Sendable {
    let engine: any CPUEngine
}
