import Foundation
import Synchronization

/// What a virtio device type (net, blk) adds to the PCI transport.
public protocol VirtioDeviceModel: AnyObject {
    /// "net", "blk": the device's name after "virtio-".
    var name: String { get }
    var deviceID: UInt16 { get }
    /// Class code, subclass of the PCI function.
    var pciClass: (UInt8, UInt8) { get }
    /// Feature bits beyond VIRTIO_F_VERSION_1, which the transport always offers.
    var deviceFeatures: UInt64 { get }
    var queueSizes: [UInt16] { get }
    func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer)
    /// The driver wrote device configuration (most devices' is read-only: the default ignores it).
    func writeConfiguration(offset: Int, from data: UnsafeRawBufferPointer)
    /// The driver made buffers available on queue `index`.
    func queueNotified(_ index: Int, _ transport: VirtioPCITransport) throws
    func reset()
    /// Called once the transport is on a platform: a model whose input arrives on its own
    /// (virtio-net on a TAP) arranges to process its queue through the platform's timers.
    func connect(_ transport: VirtioPCITransport, timers: DeviceTimers)
}

extension VirtioDeviceModel {
    public func connect(_ transport: VirtioPCITransport, timers: DeviceTimers) {}
    public func writeConfiguration(offset: Int, from data: UnsafeRawBufferPointer) {}
}

/// The virtio 1.x PCI transport ("modern" layout): one 32 KiB memory BAR holding the common
/// configuration, ISR, device configuration and notification regions, each announced by a
/// vendor-specific capability, and the MSI-X table and pending bits.
///
/// Interrupts: with MSI-X enabled, a queue's interrupt is a message on the vector the driver
/// gave that queue (none if it gave NO_VECTOR); otherwise ISR bit 0 is set and INTA# asserted
/// until the driver reads the ISR. Whether a used buffer interrupts at all is the driver's
/// call: VIRTQ_AVAIL_F_NO_INTERRUPT, or with VIRTIO_F_EVENT_IDX the used_event index, in which
/// case the device also publishes avail_event after each pass over a queue.
///
/// Where the engine routes doorbells to an I/O thread (KVM's ioeventfds), each queue's notify
/// address is routed there while the BAR is mapped, and the queues are processed on that
/// thread; one lock serialises it with the register accesses of the vCPU thread.
public final class VirtioPCITransport: PCIFunction, BusDevice, @unchecked Sendable {
    public static let versionOne: UInt64 = 1 << 32
    public static let eventIndex: UInt64 = 1 << 29
    static let commonOffset = 0x0000
    static let isrOffset = 0x1000
    static let deviceOffset = 0x2000
    static let notifyOffset = 0x3000
    static let notifyMultiplier = 4
    static let msixTableOffset = 0x4000
    static let msixPendingOffset = 0x5000
    static let barSize: UInt32 = 0x8000
    static let noVector: UInt16 = 0xFFFF

    static let statusFeaturesOK: UInt8 = 8
    static let statusNeedsReset: UInt8 = 0x40

    public let configuration: PCIConfiguration
    public let model: VirtioDeviceModel
    public let memory: GuestMemory
    public let queues: [VirtQueue]
    private var bar: MemoryBAR

    private var deviceFeatureSelect: UInt32 = 0
    private var driverFeatureSelect: UInt32 = 0
    public private(set) var driverFeatures: UInt64 = 0
    public private(set) var status: UInt8 = 0
    private var queueSelect: UInt16 = 0
    private var configGeneration: UInt8 = 0
    public let msix: MSIXTable
    private var configurationVector = VirtioPCITransport.noVector
    private var queueVectors: [UInt16]
    /// ISR status: bit 0 a queue interrupt, bit 1 a configuration change; read to clear.
    private var interruptStatus: UInt8 = 0
    /// ISR reads (the INTx driver's per-interrupt register read).
    public private(set) var interruptCauseReads = 0
    /// Serialises the I/O thread's queue work with register accesses from the vCPU thread.
    private let lock = Mutex(())
    /// The engine's I/O thread, where it has one, and the routes of the mapped BAR.
    private weak var doorbellRouter: (any DoorbellRouter)?
    private var routes: [any DoorbellRoute] = []
    /// Doorbells that arrived through the I/O thread rather than as exits.
    public private(set) var routedNotifications = 0
    /// While the I/O thread polls the queues: doorbells are off, and the driver ring index each
    /// queue had when the thread last looked.
    private var doorbellsOff = false
    private var polledAvailable: [UInt16]

    /// Why the device stopped, if a guest fed it garbage (DEVICE_NEEDS_RESET is set).
    public private(set) var brokenReason: String?
    /// Doorbell writes: each one is a VM exit on the notify region.
    public private(set) var notifications = 0
    public var onBroken: ((String) -> Void)?

    public init(model: VirtioDeviceModel, memory: GuestMemory, mmio: IOBus) {
        self.model = model
        self.memory = memory
        self.bar = MemoryBAR(bus: mmio, length: UInt64(Self.barSize))
        queues = model.queueSizes.map { VirtQueue(maximumSize: $0) }
        configuration = PCIConfiguration(
            vendor: 0x1AF4, device: 0x1040 + model.deviceID, classCode: model.pciClass.0, subclass: model.pciClass.1,
            subsystemVendor: 0x1AF4, subsystem: 0x40, revision: 1, barSizes: [Self.barSize])
        queueVectors = Array(repeating: Self.noVector, count: queues.count)
        polledAvailable = Array(repeating: 0, count: queues.count)
        msix = MSIXTable(
            vectorCount: queues.count + 1, configuration: configuration, bar: 0, tableOffset: UInt32(Self.msixTableOffset),
            pendingOffset: UInt32(Self.msixPendingOffset))
        let le32 = Self.le32
        let configuration = configuration
        func capability(type: UInt8, offset: Int, length: Int, extra: [UInt8] = []) {
            let body: [UInt8] = [UInt8(16 + extra.count), type, 0, 0, 0, 0] + le32(UInt32(offset)) + le32(UInt32(length)) + extra
            configuration.addCapability(id: 0x09, body: body)
        }
        capability(type: 1, offset: Self.commonOffset, length: 0x38)
        capability(type: 2, offset: Self.notifyOffset, length: 0x1000, extra: le32(UInt32(Self.notifyMultiplier)))
        capability(type: 3, offset: Self.isrOffset, length: 4)
        capability(type: 4, offset: Self.deviceOffset, length: 0x100)
    }

    static let features: UInt64 = versionOne | eventIndex
    var eventIndexNegotiated: Bool { driverFeatures & Self.eventIndex != 0 }

    private static func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    public func barMoved(_ index: Int, to address: UInt64?) {
        guard index == 0 else { return }
        lock.withLock { _ in bar.move(self, to: address) }
        // Not under the lock: cancelling a route waits for a handler in progress, which takes it.
        for route in routes { route.cancel() }
        routes = []
        guard let address, let doorbellRouter else { return }
        for queue in queues.indices {
            let notify = address + UInt64(Self.notifyOffset + Self.notifyMultiplier * queue)
            let route = doorbellRouter.route(address: notify, length: 2) { [weak self] writes in
                self?.doorbellFromIOThread(queue, writes: writes)
            }
            if let route { routes.append(route) }
        }
        if let polling = doorbellRouter.poll(self) { routes.append(polling) }
    }

    public func configurationAccess(_ body: () -> Void) { lock.withLock { _ in body() } }

    private func doorbellFromIOThread(_ queue: Int, writes: Int) {
        lock.withLock { _ in
            notifications += writes
            routedNotifications += writes
            notify(queue)
        }
    }

    /// The device changed its configuration (a balloon's new target): the generation moves and
    /// the driver gets the configuration-change interrupt. Callers off the vCPU thread hold the
    /// transport's lock (`configurationAccess`).
    public func configurationChanged() {
        configGeneration &+= 1
        interrupt(vector: configurationVector, status: 2)
    }

    /// Marks the device broken: it stops processing until the driver resets it.
    func fail(_ reason: String) {
        guard brokenReason == nil else { return }
        brokenReason = reason
        status |= Self.statusNeedsReset
        configGeneration &+= 1
        onBroken?(reason)
        interrupt(vector: configurationVector, status: 2)
    }

    /// Raises an interrupt: the MSI-X vector when MSI-X is on (nothing for NO_VECTOR), else the
    /// ISR bit and INTA#.
    private func interrupt(vector: UInt16, status bit: UInt8) {
        if msix.isEnabled {
            if vector != Self.noVector { msix.signal(Int(vector)) }
        } else {
            interruptStatus |= bit
            configuration.requestInterrupt(true)
        }
    }

    /// A device returned buffers outside a pass over its queues (a balloon's held statistics
    /// buffer): the driver is interrupted as after a pass. Callers off the vCPU thread hold the
    /// transport's lock (`configurationAccess`).
    public func usedBuffersReturned() {
        do { try signalUsedBuffers() } catch { fail("signalling used buffers: \(error)") }
    }

    /// After the device worked on its queues: interrupt for each queue whose new used buffers
    /// the driver asked to hear about, and tell the driver (avail_event) which index to notify at.
    private func signalUsedBuffers() throws {
        let eventIndex = eventIndexNegotiated
        for (index, queue) in queues.enumerated() where queue.enabled {
            if eventIndex && !doorbellsOff { try queue.publishAvailableEvent(memory) }
            if try queue.usedBuffersNeedInterrupt(memory, eventIndex: eventIndex) {
                interrupt(vector: queueVectors[index], status: 1)
            }
        }
    }

    private var selectedQueue: VirtQueue? { Int(queueSelect) < queues.count ? queues[Int(queueSelect)] : nil }

    public func reset() {
        status = 0
        driverFeatures = 0
        brokenReason = nil
        for queue in queues { queue.reset() }
        model.reset()
        configurationVector = Self.noVector
        queueVectors = Array(repeating: Self.noVector, count: queues.count)
        polledAvailable = Array(repeating: 0, count: queues.count)
        interruptStatus = 0
        configuration.requestInterrupt(false)
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        lock.withLock { _ in readLocked(offset: Int(offset), into: data) }
    }

    private func readLocked(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        switch offset {
        case Self.commonOffset..<Self.isrOffset:
            data.storeLittleEndian(readCommon(offset - Self.commonOffset))
        case Self.isrOffset..<Self.deviceOffset:
            data.storeLittleEndian(UInt64(interruptStatus))  // read to clear, which drops INTA#
            interruptStatus = 0
            interruptCauseReads += 1
            configuration.requestInterrupt(false)
        case Self.deviceOffset..<Self.notifyOffset:
            for index in data.indices { data[index] = 0 }
            model.readConfiguration(offset: offset - Self.deviceOffset, into: data)
        case Self.msixTableOffset..<(Self.msixTableOffset + msix.tableLength):
            msix.readTable(offset: offset - Self.msixTableOffset, into: data)
        case Self.msixPendingOffset..<(Self.msixPendingOffset + msix.pendingLength):
            msix.readPending(offset: offset - Self.msixPendingOffset, into: data)
        default:
            data.storeLittleEndian(0)
        }
    }

    private func readCommon(_ register: Int) -> UInt64 {
        let queue = selectedQueue
        switch register {
        case 0x00: return UInt64(deviceFeatureSelect)
        case 0x04:
            let features = Self.features | model.deviceFeatures
            return deviceFeatureSelect < 2 ? (features >> (32 * UInt64(deviceFeatureSelect))) & 0xFFFF_FFFF : 0
        case 0x08: return UInt64(driverFeatureSelect)
        case 0x0C: return driverFeatureSelect < 2 ? (driverFeatures >> (32 * UInt64(driverFeatureSelect))) & 0xFFFF_FFFF : 0
        case 0x10: return UInt64(configurationVector)
        case 0x12: return UInt64(queues.count)
        case 0x14: return UInt64(status)
        case 0x15: return UInt64(configGeneration)
        case 0x16: return UInt64(queueSelect)
        case 0x18: return UInt64(queue?.size ?? 0)
        case 0x1A: return UInt64(Int(queueSelect) < queueVectors.count ? queueVectors[Int(queueSelect)] : Self.noVector)
        case 0x1C: return queue?.enabled == true ? 1 : 0
        case 0x1E: return UInt64(queueSelect)  // queue_notify_off: one notify slot per queue
        case 0x20: return (queue?.descriptorTable ?? 0) & 0xFFFF_FFFF
        case 0x24: return (queue?.descriptorTable ?? 0) >> 32
        case 0x28: return (queue?.driverRing ?? 0) & 0xFFFF_FFFF
        case 0x2C: return (queue?.driverRing ?? 0) >> 32
        case 0x30: return (queue?.deviceRing ?? 0) & 0xFFFF_FFFF
        case 0x34: return (queue?.deviceRing ?? 0) >> 32
        default: return 0
        }
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        lock.withLock { _ in writeLocked(offset: Int(offset), from: data) }
    }

    private func writeLocked(offset: Int, from data: UnsafeRawBufferPointer) {
        let value = data.littleEndianValue
        switch offset {
        case Self.commonOffset..<Self.isrOffset:
            writeCommon(offset - Self.commonOffset, value, width: data.count)
        case Self.deviceOffset..<Self.notifyOffset:
            model.writeConfiguration(offset: offset - Self.deviceOffset, from: data)
        case Self.notifyOffset..<(Self.notifyOffset + 0x1000):
            notifications += 1
            let index = (offset - Self.notifyOffset) / Self.notifyMultiplier
            notify(index)
        case Self.msixTableOffset..<(Self.msixTableOffset + msix.tableLength):
            msix.writeTable(offset: offset - Self.msixTableOffset, from: data)
        default:
            break  // ISR, pending bits and device configuration are read-only
        }
    }

    /// Processes queue `index` now (also used by devices to deliver received frames).
    public func notify(_ index: Int) {
        guard brokenReason == nil, status & 0x04 != 0, index < queues.count, queues[index].enabled else { return }
        guard configuration.busMasterEnabled else {
            fail("queue \(index) notified while PCI bus mastering (DMA) is disabled")
            return
        }
        do {
            // With event index, a chain the driver added while avail_event was being published
            // (it compared against the old value) would wait for a notification it was told it
            // need not send: while avail.idx moved during the pass, pass again. A receive queue
            // whose buffers wait for frames does not move it, so this ends.
            while true {
                let before = eventIndexNegotiated ? try queues[index].availableIndex(memory) : nil
                try model.queueNotified(index, self)
                try signalUsedBuffers()
                guard let before, brokenReason == nil else { break }
                atomicMemoryFence(ordering: .sequentiallyConsistent)
                if try queues[index].availableIndex(memory) == before { break }
            }
        } catch { fail("queue \(index): \(error)") }
    }

    private func writeCommon(_ register: Int, _ value: UInt64, width: Int) {
        func low32(_ old: UInt64) -> UInt64 { (old & 0xFFFF_FFFF_0000_0000) | (value & 0xFFFF_FFFF) }
        func high32(_ old: UInt64) -> UInt64 { (old & 0xFFFF_FFFF) | (value << 32) }
        let queue = selectedQueue
        let editable = !(queue?.enabled ?? true)
        switch register {
        case 0x00: deviceFeatureSelect = UInt32(truncatingIfNeeded: value)
        case 0x08: driverFeatureSelect = UInt32(truncatingIfNeeded: value)
        case 0x0C:
            if driverFeatureSelect < 2 {
                let shift = 32 * UInt64(driverFeatureSelect)
                driverFeatures = (driverFeatures & ~(0xFFFF_FFFF << shift)) | ((value & 0xFFFF_FFFF) << shift)
            }
        case 0x14:
            let newStatus = UInt8(truncatingIfNeeded: value)
            if newStatus == 0 {
                reset()
                return
            }
            if newStatus & Self.statusFeaturesOK != 0 && status & Self.statusFeaturesOK == 0 {
                let offered = Self.features | model.deviceFeatures
                // The driver may only accept offered features, and a modern device needs VERSION_1.
                guard driverFeatures & ~offered == 0, driverFeatures & Self.versionOne != 0 else {
                    status = newStatus & ~Self.statusFeaturesOK
                    return
                }
            }
            status = (status & Self.statusNeedsReset) | newStatus
        case 0x10: configurationVector = acceptedVector(value)
        case 0x16: queueSelect = UInt16(truncatingIfNeeded: value)
        case 0x1A: if Int(queueSelect) < queueVectors.count { queueVectors[Int(queueSelect)] = acceptedVector(value) }
        case 0x18: if let queue, editable { queue.size = UInt16(truncatingIfNeeded: value) }
        case 0x1C:
            guard let queue, value & 1 == 1, !queue.enabled else { return }
            do {
                try queue.validateLayout(memory)
                queue.enabled = true
            } catch { fail("enabling queue \(queueSelect): \(error)") }
        case 0x20: if let queue, editable { queue.descriptorTable = low32(queue.descriptorTable) }
        case 0x24: if let queue, editable { queue.descriptorTable = high32(queue.descriptorTable) }
        case 0x28: if let queue, editable { queue.driverRing = low32(queue.driverRing) }
        case 0x2C: if let queue, editable { queue.driverRing = high32(queue.driverRing) }
        case 0x30: if let queue, editable { queue.deviceRing = low32(queue.deviceRing) }
        case 0x34: if let queue, editable { queue.deviceRing = high32(queue.deviceRing) }
        default: break
        }
    }
}

extension VirtioPCITransport: QueuePoller {
    public func pollQueues() -> Bool {
        lock.withLock { _ in
            guard brokenReason == nil, status & 0x04 != 0 else { return false }
            var found = false
            for index in queues.indices where queues[index].enabled {
                guard let available = try? queues[index].availableIndex(memory), available != polledAvailable[index]
                else { continue }
                polledAvailable[index] = available
                notify(index)
                found = true
            }
            return found
        }
    }

    public func setDoorbells(_ enabled: Bool) -> Bool {
        lock.withLock { _ in
            doorbellsOff = !enabled
            guard brokenReason == nil, status & 0x04 != 0 else { return false }
            var waiting = false
            for index in queues.indices where queues[index].enabled {
                do {
                    try queues[index].setDoorbells(enabled, eventIndex: eventIndexNegotiated, memory)
                    guard enabled else { continue }
                    // The driver writes its index, then reads whether to ring; the device writes
                    // that it wants rings, then reads the index: one of the two sees the other.
                    atomicMemoryFence(ordering: .sequentiallyConsistent)
                    if try queues[index].availableIndex(memory) != polledAvailable[index] { waiting = true }
                } catch { fail("queue \(index): \(error)") }
            }
            return waiting
        }
    }
}

extension VirtioPCITransport {
    /// A vector the driver asked for, or NO_VECTOR (which the driver reads back as refusal)
    /// when the table has no such entry.
    fileprivate func acceptedVector(_ value: UInt64) -> UInt16 {
        let vector = UInt16(truncatingIfNeeded: value)
        return Int(vector) < msix.vectorCount ? vector : Self.noVector
    }
}

extension VirtioPCITransport: Device {
    public var name: String { "virtio-\(model.name)" }
    public var doorbells: Int { notifications }
    public var ioThreadDoorbells: Int { lock.withLock { _ in routedNotifications } }
    /// Whether an I/O thread serves the queues, so queue work may run off the vCPU thread.
    public var isServedByIOThread: Bool { ioThread != nil }
    /// The I/O thread serving the queues, where the engine has one.
    public var ioThread: (any DoorbellRouter)? { lock.withLock { _ in doorbellRouter } }
    public func attach(to platform: Platform) throws {
        doorbellRouter = platform.doorbells
        model.connect(self, timers: platform.timers)
        try platform.pci().plug(self)
    }
}
