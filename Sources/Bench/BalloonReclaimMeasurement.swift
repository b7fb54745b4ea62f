import Foundation
import Machine
import Results
import VMM

/// A balloon the host drives: asked for a size, read for what the driver holds.
protocol HostDrivenBalloon {
    /// Asks the driver to hold `pages` 4 KiB pages.
    func request(pages: UInt32) async throws
    /// The pages the driver holds (and, for hvbench's device, the device took) now.
    func heldPages() async throws -> UInt32
    /// Memory resident on the host for the VM now, in MiB (nil: not measurable).
    func residentMebibytes() -> Double?
    /// How many times the guest said it has used the pages it got back again (nil: it does
    /// not say, as Linux's driver does not).
    func refills() -> Int?
}

/// The host-driven reclaim cycle every balloon-reclaim measurement runs, whatever the balloon.
enum BalloonReclaim {
    struct Timings {
        var reclaimMilliseconds: [Double] = []
        var returnMilliseconds: [Double] = []
        var residentBefore: [Double] = []
        var residentAfter: [Double] = []

        /// The result of `pages` pages a request, residency under `residentName`.
        func measurement(pages: UInt64, residentName: String, privilege: String, engine: String) -> Measurement {
            Measurement(
                metrics: MetricDerivation.reclaimMetrics(
                    pages: pages, reclaimMilliseconds: reclaimMilliseconds, returnMilliseconds: returnMilliseconds,
                    residentBefore: residentBefore, residentAfter: residentAfter, residentName: residentName), tscHertz: 1,
                privilege: privilege, engine: engine)
        }
    }

    struct StuckBalloon: Error, CustomStringConvertible {
        let description: String
    }

    /// The benchmark guest's console line after it wrote the pages it got back again.
    static let refilledLine = "hvbench-guest: balloon-refilled "

    /// `warmups + repetitions` times: ask for `pages`, time until the balloon holds them; ask
    /// for none, time until it holds none. Residency is read before and after each reclaim.
    static func run(
        _ balloon: some HostDrivenBalloon, pages: UInt32, warmups: Int, repetitions: Int, limitSeconds: Double,
        progress: () -> Void
    ) async throws -> Timings {
        var timings = Timings()
        for repetition in 0..<(warmups + repetitions) {
            let before = balloon.residentMebibytes()
            let reclaim = try await timedRequest(balloon, pages: pages, limitSeconds: limitSeconds)
            let after = balloon.residentMebibytes()
            let giveBack = try await timedRequest(balloon, pages: 0, limitSeconds: limitSeconds)
            // The next reclaim starts once the guest has used its pages again, where it says so.
            let limit = MonotonicClock.nanoseconds() + UInt64(limitSeconds * 1e9)
            while let refills = balloon.refills(), refills <= repetition {
                guard MonotonicClock.nanoseconds() < limit else {
                    throw StuckBalloon(description: "the guest did not use the pages it got back within \(Int(limitSeconds)) s")
                }
                try await Task.sleep(for: .milliseconds(1))
            }
            guard repetition >= warmups else { continue }
            timings.reclaimMilliseconds.append(reclaim)
            timings.returnMilliseconds.append(giveBack)
            if let before, let after {
                timings.residentBefore.append(before)
                timings.residentAfter.append(after)
            }
            progress()
        }
        return timings
    }

    /// Milliseconds from the request until the balloon holds `pages`.
    private static func timedRequest(_ balloon: some HostDrivenBalloon, pages: UInt32, limitSeconds: Double) async throws
        -> Double
    {
        let start = MonotonicClock.nanoseconds()
        try await balloon.request(pages: pages)
        let limit = start + UInt64(limitSeconds * 1e9)
        var held = try await balloon.heldPages()
        while held != pages {
            guard MonotonicClock.nanoseconds() < limit else {
                throw StuckBalloon(
                    description: "the balloon holds \(held) pages \(Int(limitSeconds)) s after \(pages) were asked for")
            }
            await Task.yield()
            held = try await balloon.heldPages()
        }
        return Double(MonotonicClock.nanoseconds() - start) / 1e6
    }
}

/// mem.balloon-reclaim on hvbench's VMs: the guest's interrupt-driven driver follows the
/// target the host sets through `BalloonControl`; a request is done when the driver's `actual`
/// and the pages the device took both reach it. Residency is guest RAM (mincore).
enum BalloonReclaimMeasurement: MeasurementKind {
    static func measures(_ system: SystemDefinition, _ benchmark: BenchmarkDefinition?) -> Bool {
        GuestMeasurement.measures(system, benchmark) && benchmark?.id == "mem.balloon-reclaim"
    }

    private struct VMBalloon: HostDrivenBalloon {
        let control: BalloonControl
        let guest: HostDrivenGuest

        func request(pages: UInt32) async throws { control.request(pages: pages) }

        func heldPages() async throws -> UInt32 {
            guard !guest.hasEnded, let state = control.state else {
                throw BalloonReclaim.StuckBalloon(description: "the VM ended while its balloon was driven")
            }
            // Done when the driver says so and the device agrees.
            return Int(state.actual) == state.ballooned ? state.actual : UInt32.max
        }

        func residentMebibytes() -> Double? { guest.residentMebibytes }
        let refillsSaid: Bool
        func refills() -> Int? { refillsSaid ? guest.refills : nil }
    }

    static func measure(_ context: MeasurementContext, by runner: BenchmarkRunner) async -> MeasurementOutcome {
        guard let cpu = context.cpu, let devices = context.system.devices else {
            return .failed("\(context.system.name) is not one of hvbench's VMs")
        }
        let control = BalloonControl()
        var io = context.plan.vm.io(devices, disk: nil, peer: nil)
        io.balloon = control
        var job = context.job()
        job.balloon = true
        let guest = HostDrivenGuest(readyLine: readyLine)
        guest.boot(context, job, cpu: cpu, io: io, by: runner, thread: "hvb-balloon-vm")
        return await drive(
            guest, control, context, by: runner, header: "# cmdline: \(job.commandLine)\n", privilege: "cpl3", refillsSaid: true)
    }

    /// How the guest (hvbench's or Linux's /init) says it is ready to be driven.
    static let readyLine = "hvbench-guest: balloon-ready "

    /// Drives a booted guest's balloon through `control` and stops the VM; the VM must have
    /// run until it was stopped, its devices intact and its guest without a failure.
    /// `privilege`: where the driver runs (the benchmark guest's at CPL3, Linux's in its kernel).
    static func drive(
        _ guest: HostDrivenGuest, _ control: BalloonControl, _ context: MeasurementContext, by runner: BenchmarkRunner,
        header: String, privilege: String, refillsSaid: Bool
    ) async -> MeasurementOutcome {
        let entry = context.entry
        await guest.waitUntilReadyOrEnded(until: Date().addingTimeInterval(entry.timeoutSeconds / 2))
        var outcome: MeasurementOutcome = .failed("the guest did not offer its pages within \(Int(entry.timeoutSeconds / 2)) s")
        if guest.isReady {
            do {
                let timings = try await BalloonReclaim.run(
                    VMBalloon(control: control, guest: guest, refillsSaid: refillsSaid), pages: UInt32(entry.iterations),
                    warmups: entry.warmups,
                    repetitions: entry.repetitions, limitSeconds: entry.timeoutSeconds / 4
                ) { runner.progress(.sample) }
                outcome = .measured(
                    timings.measurement(
                        pages: entry.iterations, residentName: "resident", privilege: privilege, engine: context.expectedEngine))
            } catch {
                outcome = .failed("\(error)")
            }
        }
        guest.stop.request()
        switch guest.waitUntilEnded() {
        case .failure(let problem): return .failed(problem.description)
        case .success(let boot):
            context.log(
                header + "\(boot.console)\n# \(boot.outcome.ending.summary)\n"
                    + boot.brokenDevices.map { "# device error: \($0)\n" }.joined(), by: runner)
            if let broken = boot.brokenDevices.first { return .failed("device error: \(broken)") }
            if let said = VMPairMeasurement.failure(in: boot.console.split(separator: "\n")) {
                return .failed("the guest failed: \(said)")
            }
            guard boot.outcome.ending == .stoppedByHost else {
                return .failed("the VM ended before it was stopped: \(boot.outcome.ending.summary)")
            }
            guard case .measured(var measurement) = outcome else { return outcome }
            measurement.engine = boot.engineName
            measurement.exits = boot.outcome.counters
            return .measured(measurement)
        }
    }
}
