/// MSI-X for a PCI function (PCI 3.0 §6.8.2): the capability in configuration space, and the
/// vector table and pending-bit array the owning device maps into one of its memory BARs.
///
/// A vector signalled while it (or the whole function) is masked sets its pending bit instead,
/// and is sent when unmasked, as the specification requires — drivers rely on that to mask
/// around their own critical sections without losing interrupts.
public final class MSIXTable {
    public static let capabilityID: UInt8 = 0x11
    static let entrySize = 16

    public let vectorCount: Int
    private let configuration: PCIConfiguration
    private let controlOffset: Int
    /// Four dwords per entry: address low, address high, data, vector control (bit 0: masked).
    private var table: [UInt32]
    private var pending: [Bool]
    /// Messages sent, and signals that found their vector masked (held as pending).
    public private(set) var messagesSent = 0
    public private(set) var signalsWhileMasked = 0

    /// Adds the capability to `configuration`, announcing the table at `tableOffset` and the
    /// pending bits at `pendingOffset` of BAR `bar`.
    public init(vectorCount: Int, configuration: PCIConfiguration, bar: Int, tableOffset: UInt32, pendingOffset: UInt32) {
        precondition((1...2048).contains(vectorCount), "MSI-X has 1 to 2048 vectors")
        self.vectorCount = vectorCount
        self.configuration = configuration
        table = (0..<vectorCount).flatMap { _ in [UInt32(0), 0, 0, 1] }  // every vector masked at reset
        pending = Array(repeating: false, count: vectorCount)
        let control = UInt16(vectorCount - 1)
        func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        let body =
            [UInt8(truncatingIfNeeded: control), UInt8(control >> 8)] + le32(tableOffset | UInt32(bar))
            + le32(pendingOffset | UInt32(bar))
        controlOffset = Int(configuration.addCapability(id: Self.capabilityID, body: body)) + 2
        configuration.makeWritable(offset: controlOffset + 1, bits: 0xC0)  // enable, function mask
        configuration.capabilityWritten = { [unowned self] in self.sendUnmaskedPending() }
    }

    public var tableLength: Int { vectorCount * Self.entrySize }
    public var pendingLength: Int { (vectorCount + 63) / 64 * 8 }

    public var isEnabled: Bool { configuration.bytes[controlOffset + 1] & 0x80 != 0 }
    public var functionMasked: Bool { configuration.bytes[controlOffset + 1] & 0x40 != 0 }

    public func message(_ vector: Int) -> MSIMessage {
        MSIMessage(address: UInt64(table[4 * vector]) | UInt64(table[4 * vector + 1]) << 32, data: table[4 * vector + 2])
    }

    public func isMasked(_ vector: Int) -> Bool { functionMasked || table[4 * vector + 3] & 1 != 0 }

    /// The device signals `vector`. Returns false for a vector the table does not have (the
    /// caller's "no vector").
    @discardableResult
    public func signal(_ vector: Int) -> Bool {
        guard vector >= 0, vector < vectorCount else { return false }
        if isMasked(vector) {
            pending[vector] = true
            signalsWhileMasked += 1
        } else {
            send(vector)
        }
        return true
    }

    private func send(_ vector: Int) {
        pending[vector] = false
        messagesSent += 1
        configuration.interruptController?.signalMessage(message(vector))
    }

    private func sendUnmaskedPending() {
        guard isEnabled else { return }
        for vector in 0..<vectorCount where pending[vector] && !isMasked(vector) { send(vector) }
    }

    // MARK: The table and the pending bits in the BAR (offsets relative to each structure)

    public func readTable(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        data.storeLittleEndian(dwords(at: offset, count: data.count))
    }

    public func writeTable(offset: Int, from data: UnsafeRawBufferPointer) {
        guard offset & 3 == 0, data.count == 4 || data.count == 8 else { return }  // dword or qword accesses only
        let value = data.littleEndianValue
        for index in 0..<(data.count / 4) {
            let dword = offset / 4 + index
            guard dword < table.count else { return }
            table[dword] = UInt32(truncatingIfNeeded: value >> (32 * UInt64(index)))
        }
        sendUnmaskedPending()
    }

    public func readPending(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        var value: UInt64 = 0
        for bit in 0..<(8 * data.count) {
            let vector = 8 * offset + bit
            if vector < vectorCount, pending[vector] { value |= 1 << UInt64(bit) }
        }
        data.storeLittleEndian(value)
    }

    private func dwords(at offset: Int, count: Int) -> UInt64 {
        guard offset & 3 == 0 else { return 0 }
        var value: UInt64 = 0
        for index in 0..<((count + 3) / 4) where offset / 4 + index < table.count {
            value |= UInt64(table[offset / 4 + index]) << (32 * UInt64(index))
        }
        return value
    }
}
