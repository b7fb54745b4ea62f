/// What a NIC model's frames go to and come from: the in-VMM peer (`NetworkPeer`), or a TAP
/// device into the host kernel's network stack (`TAPBackend`). Called by device models on the
/// thread that does device work.
public protocol NetworkBackend: AnyObject {
    /// A frame the guest transmitted.
    func received(_ frame: UnsafeRawBufferPointer)
    /// Whether a frame is waiting for the guest.
    var hasFrameForGuest: Bool { get }
    /// Writes the next frame for the guest into `buffer`; its length, or nil if none waits or it
    /// does not fit (it then stays queued).
    func frameForGuest(into buffer: UnsafeMutableRawBufferPointer) -> Int?
    /// For backends whose frames arrive on their own: `arrived` is called (from any thread) when
    /// frames for the guest come in, and the device then takes them.
    func onArrival(_ arrived: @escaping @Sendable () -> Void)
    /// For backends with a descriptor of their own: frames are read on `router`'s I/O thread,
    /// which calls `arrived` after queuing them. false: use `onArrival`.
    func receive(on router: any DoorbellRouter, _ arrived: @escaping @Sendable () -> Void) -> Bool
}

extension NetworkBackend {
    public func onArrival(_ arrived: @escaping @Sendable () -> Void) {}
    public func receive(on router: any DoorbellRouter, _ arrived: @escaping @Sendable () -> Void) -> Bool { false }
}

extension NetworkPeer: NetworkBackend {}

/// A device handed to a backend's thread, which only asks the vCPU thread to use it.
struct UncheckedReference<Value: AnyObject>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
