/// Part of the results schema (`exits` of a result); the VMM fills it while a guest runs.
/// Exits by kind, recorded with every result so a report can say why one mode is faster.
public struct ExitCounters: Equatable, Sendable, Codable {
    public var portIO = 0
    public var mmio = 0
    public var halts = 0
    public var interruptions = 0
    public var unclaimedPortReads = 0
    public var unclaimedMMIOReads = 0
    /// Doorbells rung by the guest's drivers (virtio notifications, e1000 tail writes).
    public var notifications = 0
    /// Benchmark operations the guest performed during these exits (warm-ups and the latency
    /// pass included), so that exits per operation can be derived; 0 when not known.
    public var operations = 0
    public init() {}

    /// Adds another boot's counts (the rounds of one result are merged this way).
    public mutating func add(_ other: ExitCounters) {
        portIO += other.portIO
        mmio += other.mmio
        halts += other.halts
        interruptions += other.interruptions
        unclaimedPortReads += other.unclaimedPortReads
        unclaimedMMIOReads += other.unclaimedMMIOReads
        notifications += other.notifications
        operations += other.operations
    }

    /// (port I/O + MMIO exits) per operation.
    public var exitsPerOperation: Double? { operations > 0 ? Double(portIO + mmio) / Double(operations) : nil }
    public var notificationsPerOperation: Double? { operations > 0 ? Double(notifications) / Double(operations) : nil }
}
