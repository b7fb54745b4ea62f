/// The PIIX3 IDE function's bus-master DMA engine (Intel 82371SB, as QEMU's `-M pc` has it):
/// PCI 8086:7010, class 01.01 (IDE, compatibility mode, bus-master capable), BAR 4 = 16 I/O
/// ports. The primary channel's registers: command (+0: start, direction), status (+2: active,
/// error and interrupt, write 1 to clear; drive DMA-capable bits) and the PRD table address (+4).
///
/// A transfer runs when the disk holds a DMA command and the driver has set Start, in either
/// order. The PRD table is guest-written: each 8-byte entry (address, byte count with 0 = 64 KiB,
/// end-of-table flag) is checked against guest RAM, the walk is bounded, and a table that is
/// too short, runs off RAM or points outside it ends the command with the error bit and an
/// interrupt — the driver sees a failed transfer, the VMM goes on.
public final class IDEBusMaster: PCIFunction, BusDevice {
    public static let registerCount: UInt32 = 16
    /// A PRD table may not cross a 64 KiB boundary: at most 8192 entries.
    static let maximumEntries = 8192

    enum Status {
        static let active: UInt8 = 0x01, error: UInt8 = 0x02, interrupt: UInt8 = 0x04, driveCapable: UInt8 = 0x60
    }

    public let configuration = PCIConfiguration(
        vendor: 0x8086, device: 0x7010, classCode: 0x01, subclass: 0x01, programmingInterface: 0x80,
        barSizes: [0, 0, 0, 0, registerCount], ioBARs: [4])
    private unowned let disk: IDEDisk
    /// The port bus BAR 4 decodes on; set when the disk attaches.
    weak var ports: IOBus? {
        didSet { if let ports { bar = MemoryBAR(bus: ports, length: UInt64(Self.registerCount)) } }
    }
    private var bar: MemoryBAR?
    private var command: UInt8 = 0
    private var status: UInt8 = 0
    private var tableAddress: UInt32 = 0
    /// Transfers that ended with the error bit (a bad PRD table, DMA off, wrong direction).
    public private(set) var failedTransfers = 0

    init(disk: IDEDisk) {
        self.disk = disk
        configuration.clearInterruptPin()  // the channel interrupts on IRQ 14, not INTA#
        // IDETIM (0x40 primary, 0x42 secondary), bit 15: the channel's ports are decoded. Linux's
        // ata_piix probes only channels with it set; hvbench models the primary channel alone.
        configuration.presetDeviceSpecific(0x41, 0x80)
    }

    public func barMoved(_ index: Int, to address: UInt64?) {
        guard index == 4 else { return }
        bar?.move(self, to: address)
    }

    var started: Bool { command & 0x01 != 0 }
    var toMemory: Bool { command & 0x08 != 0 }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let value: UInt64
        switch offset {
        case 0: value = UInt64(command)
        case 2: value = UInt64(status)
        case 4...7: value = UInt64(tableAddress) >> (8 * (offset - 4))
        default: value = 0
        }
        data.storeLittleEndian(value)
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        let value = data.littleEndianValue
        switch offset {
        case 0:
            let wasStarted = started
            command = UInt8(truncatingIfNeeded: value) & 0x09
            if started && !wasStarted {
                status |= Status.active
                transferIfStarted()
            } else if !started {
                status &= ~Status.active  // stopping aborts nothing here: transfers are instant
            }
            if data.count > 2 { write(offset: 2, from: UnsafeRawBufferPointer(rebasing: data[2...])) }
        case 2:
            let byte = UInt8(truncatingIfNeeded: value)
            status &= ~(byte & (Status.error | Status.interrupt))  // write 1 to clear
            status = (status & ~Status.driveCapable) | (byte & Status.driveCapable)
        case 4:
            tableAddress = UInt32(truncatingIfNeeded: value) & ~3
        default:
            break  // the secondary channel has no disk
        }
    }

    /// Runs the disk's pending DMA command if the engine has been started.
    func transferIfStarted() {
        guard started, status & Status.active != 0, disk.dmaRequest != nil else { return }
        disk.performDMA { request in
            defer { status = (status & ~Status.active) | Status.interrupt }
            guard configuration.busMasterEnabled, request.toMemory == toMemory, try move(request) else {
                status |= Status.error
                failedTransfers += 1
                return false
            }
            return true
        }
    }

    /// Copies the request's sectors along the PRD table. False when the table cannot carry them.
    private func move(_ request: IDEDisk.DMARequest) throws -> Bool {
        let memory = disk.memory
        var remaining = request.count * 512
        var diskOffset = request.sector * 512
        var entry = UInt64(tableAddress)
        for _ in 0..<Self.maximumEntries where remaining > 0 {
            guard let descriptor = memory.flatMap({ try? $0.bytes(at: entry, count: 8) }) else { return false }
            let address = UInt64(UInt32(littleEndian: descriptor.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
            let rawCount = Int(UInt16(littleEndian: descriptor.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
            let last = descriptor[7] & 0x80 != 0
            let length = min(rawCount == 0 ? 65536 : rawCount & ~1, remaining)
            guard let region = memory.flatMap({ try? $0.bytes(at: address, count: length) }) else { return false }
            if request.toMemory {
                try disk.disk.read(into: region, at: diskOffset)
            } else {
                try disk.disk.write(from: UnsafeRawBufferPointer(region), at: diskOffset)
            }
            remaining -= length
            diskOffset += UInt64(length)
            entry += 8
            if last { break }
        }
        return remaining == 0
    }
}
