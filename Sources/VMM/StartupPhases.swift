import Machine

/// Where a VM's start-up time went: the VMM's construction steps, then the bootstrap vCPU's
/// thread and the guest's boot milestones (port 0x80: 1 first instruction, 2 kernel C code,
/// 3 main at CPL3), each as time since construction began. vm.boot logs it per boot, so a
/// change in start-up can be traced to the step that moved.
public struct StartupPhases: Sendable, CustomStringConvertible {
    let startedAt: UInt64
    public private(set) var phases: [(name: String, nanoseconds: UInt64)] = []

    init(startedAt: UInt64) { self.startedAt = startedAt }

    mutating func mark(_ name: String) { phases.append((name, MonotonicClock.nanoseconds() &- startedAt)) }

    mutating func record(_ outcome: VMOutcome) {
        if let thread = outcome.bootstrapThreadStartedAtNanoseconds { phases.append(("vcpu-thread", thread &- startedAt)) }
        for (code, name) in [(UInt8(1), "first-instruction"), (2, "kernel"), (3, "main")] {
            guard let milestone = outcome.milestones.first(where: { $0.code == code }) else { continue }
            phases.append((name, milestone.nanoseconds &- startedAt))
        }
    }

    /// "memory 6 µs, load 62 µs, …", each since construction began.
    public var description: String {
        phases.map { "\($0.name) \(Int(($0.nanoseconds + 500) / 1000)) µs" }.joined(separator: ", ")
    }
}
