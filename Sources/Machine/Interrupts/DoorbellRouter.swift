/// Doorbells an engine can catch without an exit to the VMM's vCPU thread: under KVM an
/// ioeventfd per doorbell address, served by an I/O thread (device work then runs beside the
/// guest, on another CPU, as QEMU's iothreads and Firecracker's event loop do). The emulator
/// has none: its doorbells stay ordinary MMIO exits handled on the vCPU thread.
public protocol DoorbellRouter: AnyObject {
    /// Calls `handler` on the I/O thread, with how many writes arrived since the last call,
    /// whenever the guest writes `length` bytes at MMIO `address`. Nil when the engine cannot.
    func route(address: UInt64, length: Int, _ handler: @escaping @Sendable (Int) -> Void) -> DoorbellRoute?
    /// Stops the I/O thread and waits for a handler in progress: after it returns no handler
    /// runs again, so the VM's memory may be released.
    func shutdown()
    /// Doorbells the I/O thread found while polling, before it went to sleep.
    var polledEvents: Int { get }
}

/// How long an I/O thread polls for doorbells before it sleeps.
public enum DoorbellPolling {
    /// 32 µs: QEMU's default `poll-max-ns` for its iothreads.
    public static let defaultLimitMicroseconds: UInt64 = 32
    /// Up to a millisecond: longer only burns a host CPU.
    public static let limitMicroseconds: ClosedRange<UInt64> = 0...1_000
}

/// One routed doorbell; `cancel()` (or moving the BAR) removes it.
public protocol DoorbellRoute: AnyObject {
    func cancel()
}
