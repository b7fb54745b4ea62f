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
    /// Calls `handler` on the I/O thread whenever `descriptor` is readable (a backend's TAP:
    /// frames from the host then reach the guest from the thread that also takes its doorbells,
    /// polled in the same window, as QEMU's main loop reads its TAP). The handler must read what
    /// it can or pause the watch, or the thread is called again at once. Nil when it cannot.
    func watch(descriptor: Int32, _ handler: @escaping @Sendable () -> Void) -> DescriptorWatch?
    /// Lets the I/O thread look at a device's queues itself while it polls (as QEMU's iothreads
    /// poll virtqueues): the device is told when the thread starts and stops polling, so it can
    /// tell the driver that doorbells are not needed meanwhile. Nil when the engine cannot.
    func poll(_ poller: any QueuePoller) -> DoorbellRoute?
}

extension DoorbellRouter {
    public func watch(descriptor: Int32, _ handler: @escaping @Sendable () -> Void) -> DescriptorWatch? { nil }
    public func poll(_ poller: any QueuePoller) -> DoorbellRoute? { nil }
}

/// A device whose queues an I/O thread polls. Called on that thread only, serialised with the
/// doorbell handlers.
public protocol QueuePoller: AnyObject, Sendable {
    /// The thread is polling: runs whatever the driver made available since the last look;
    /// whether there was any.
    func pollQueues() -> Bool
    /// The thread starts (false) or stops (true) polling. Doorbells are off while it polls (the
    /// driver is told, VIRTQ_USED_F_NO_NOTIFY or a stale avail_event); turning them back on
    /// returns whether the driver made work available meanwhile without ringing, which the
    /// thread then takes before it sleeps.
    func setDoorbells(_ enabled: Bool) -> Bool
}

/// A readable-descriptor watch on an I/O thread. `pause()` stops the calls until `resume()`
/// (a backend whose queue for the guest is full leaves the rest in the kernel's queue, where
/// the host's sender backs up); both may be called from any thread, inside the handler too.
public protocol DescriptorWatch: AnyObject, Sendable {
    func pause()
    func resume()
    func cancel()
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
