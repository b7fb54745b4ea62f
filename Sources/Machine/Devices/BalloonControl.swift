import Synchronization

/// The host's handle on one VM's balloon, usable from any thread while the VM runs: it asks the
/// driver for a size (num_pages, with a configuration-change interrupt, as QMP's `balloon`
/// does) and reads what the driver says it holds (actual) and what the device really took.
/// The VMM attaches the device when it places it.
public final class BalloonControl: Sendable {
    private struct Attached: @unchecked Sendable {
        let transport: VirtioPCITransport
        let balloon: VirtioBalloon
    }
    private let attached = Mutex<Attached?>(nil)

    public init() {}

    /// Called by the VMM as it places the device.
    public func attach(_ transport: VirtioPCITransport, _ balloon: VirtioBalloon) {
        attached.withLock { $0 = Attached(transport: transport, balloon: balloon) }
    }

    /// Asks the driver to hold `pages` 4 KiB pages. False before the VM has its balloon.
    @discardableResult
    public func request(pages: UInt32) -> Bool {
        guard let device = attached.withLock({ $0 }) else { return false }
        device.transport.configurationAccess {
            device.balloon.setTarget(pages: pages)
            device.transport.configurationChanged()
        }
        return true
    }

    /// What the balloon holds now: the driver's `actual`, and the pages the device took.
    public var state: (actual: UInt32, ballooned: Int)? {
        guard let device = attached.withLock({ $0 }) else { return nil }
        var state: (UInt32, Int) = (0, 0)
        device.transport.configurationAccess { state = (device.balloon.actualPages, device.balloon.ballooned) }
        return state
    }
}
