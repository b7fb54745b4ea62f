/// An ATA disk on the primary IDE channel (ports 0x1F0-0x1F7, control 0x3F6): IDENTIFY,
/// READ/WRITE SECTORS and READ/WRITE DMA with their LBA48 EXT forms, FLUSH CACHE. Register
/// writes keep the previous byte as the "high order byte" that LBA48 commands use.
///
/// Interrupts: INTRQ on IRQ 14 (IOAPIC input 14, as on every PC) when a PIO sector is ready or
/// taken, when a command without data completes, and when a DMA transfer ends; reading the
/// status register clears it, and nIEN in the device control register holds the line low.
/// DMA goes through the PIIX bus-master function (`IDEBusMaster`) and its PRD table.
public final class IDEDisk {
    public static let commandBase: UInt64 = 0x1F0
    public static let controlPort: UInt64 = 0x3F6
    public static let interruptInput = 14

    enum Status {
        static let error: UInt8 = 0x01, dataRequest: UInt8 = 0x08, ready: UInt8 = 0x40, busy: UInt8 = 0x80
    }

    public let disk: DiskImage
    private var features: UInt8 = 0
    /// The multiword DMA mode SET FEATURES selected (nil: none, PIO).
    private var selectedMultiwordDMA: Int?
    private var sectorCount: (low: UInt8, high: UInt8) = (0, 0)
    private var lba: [(low: UInt8, high: UInt8)] = [(0, 0), (0, 0), (0, 0)]
    private var device: UInt8 = 0xE0
    private var status: UInt8 = Status.ready
    private var error: UInt8 = 0
    private var buffer = [UInt8](repeating: 0, count: 512)
    private var position = 512
    private var remaining = 0
    private var currentSector: UInt64 = 0
    private var writing = false
    public private(set) var commands = 0
    /// INTRQ as the device drives it, and whether nIEN lets it reach the line.
    private var interruptPending = false
    private var interruptsEnabled = true
    var interruptLine: InterruptLine?
    /// Status reads that cleared a pending INTRQ: the driver's per-interrupt register read.
    public private(set) var interruptCauseReads = 0
    /// A DMA command waiting for the bus master to move its data.
    struct DMARequest: Equatable {
        let sector: UInt64
        let count: Int
        let toMemory: Bool
    }
    private(set) var dmaRequest: DMARequest?
    /// Guest RAM, for DMA; set when the disk attaches.
    var memory: GuestMemory?
    /// The PCI function whose PRD table the DMA commands use.
    public private(set) lazy var busMaster = IDEBusMaster(disk: self)

    /// The two port ranges as bus devices.
    public private(set) lazy var commandBlock = Ports(disk: self, control: false)
    public private(set) lazy var controlBlock = Ports(disk: self, control: true)

    public final class Ports: BusDevice {
        unowned let disk: IDEDisk
        let control: Bool
        init(disk: IDEDisk, control: Bool) {
            self.disk = disk
            self.control = control
        }
        public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
            if control { data.storeLittleEndian(UInt64(disk.currentStatus)) } else { disk.readRegister(Int(offset), into: data) }
        }
        public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
            if control {
                disk.writeControl(UInt8(truncatingIfNeeded: data.littleEndianValue))
            } else {
                disk.writeRegister(Int(offset), data)
            }
        }
    }

    public init(disk: DiskImage) { self.disk = disk }

    private var masterSelected: Bool { device & 0x10 == 0 }
    var currentStatus: UInt8 { masterSelected ? status : 0 }

    private func raiseInterrupt() {
        interruptPending = true
        interruptLine?.set(interruptsEnabled)
    }

    /// A read of the status register (not the alternate status) acknowledges INTRQ.
    private func acknowledgeInterrupt() {
        guard interruptPending else { return }
        interruptPending = false
        if interruptsEnabled { interruptCauseReads += 1 }  // a polling driver's reads are not that
        interruptLine?.set(false)
    }

    func abort(_ code: UInt8 = 0x04) {
        error = code  // ABRT (or IDNF 0x10 for a bad address)
        status = Status.ready | Status.error
        remaining = 0
        position = 512
        dmaRequest = nil
        raiseInterrupt()
    }

    func readRegister(_ register: Int, into data: UnsafeMutableRawBufferPointer) {
        switch register {
        case 0:
            for index in data.indices { data[index] = nextDataByte() }
        case 1: data.storeLittleEndian(UInt64(error))
        case 2: data.storeLittleEndian(UInt64(sectorCount.low))
        case 3, 4, 5: data.storeLittleEndian(UInt64(lba[register - 3].low))
        case 6: data.storeLittleEndian(UInt64(device))
        default:
            data.storeLittleEndian(UInt64(currentStatus))
            acknowledgeInterrupt()
        }
    }

    private func nextDataByte() -> UInt8 {
        guard !writing, position < 512 else { return 0 }
        let byte = buffer[position]
        position += 1
        if position == 512 { sectorDone() }
        return byte
    }

    func writeRegister(_ register: Int, _ data: UnsafeRawBufferPointer) {
        let value = UInt8(truncatingIfNeeded: data.littleEndianValue)
        switch register {
        case 0:
            guard writing, position < 512 else { return }
            for byte in data where position < 512 {
                buffer[position] = byte
                position += 1
            }
            if position == 512 { sectorDone() }
        case 1: features = value
        case 2: sectorCount = (value, sectorCount.low)
        case 3, 4, 5: lba[register - 3] = (value, lba[register - 3].low)
        case 6: device = value
        default: execute(value)
        }
    }

    func writeControl(_ value: UInt8) {
        interruptsEnabled = value & 0x02 == 0  // nIEN
        interruptLine?.set(interruptPending && interruptsEnabled)
        if value & 0x04 != 0 { reset() }  // SRST: software reset
    }

    /// The state after a software reset: ready, diagnostics passed, no transfer pending.
    public func reset() {
        status = Status.ready
        error = 0x01  // diagnostic: no error
        remaining = 0
        position = 512
        dmaRequest = nil
        interruptPending = false
        interruptLine?.set(false)
    }

    private var lba28: UInt64 {
        UInt64(device & 0x0F) << 24 | UInt64(lba[2].low) << 16 | UInt64(lba[1].low) << 8 | UInt64(lba[0].low)
    }
    private var lba48: UInt64 {
        UInt64(lba[2].high) << 40 | UInt64(lba[1].high) << 32 | UInt64(lba[0].high) << 24 | UInt64(lba[2].low) << 16
            | UInt64(lba[1].low) << 8 | UInt64(lba[0].low)
    }

    private func execute(_ command: UInt8) {
        guard masterSelected else { return }
        commands += 1
        error = 0
        switch command {
        case 0xEC: identify()
        case 0x20, 0x24, 0x30, 0x34:
            let extended = command == 0x24 || command == 0x34
            let count = extended ? Int(sectorCount.high) << 8 | Int(sectorCount.low) : Int(sectorCount.low)
            let sectors = count == 0 ? (extended ? 65536 : 256) : count
            let start = extended ? lba48 : lba28
            guard device & 0x40 != 0, disk.contains(sector: start, count: sectors) else { return abort(0x10) }
            currentSector = start
            remaining = sectors
            writing = command == 0x30 || command == 0x34
            if writing {
                position = 0
                status = Status.ready | Status.dataRequest  // the first sector needs no interrupt
            } else {
                loadSector()
            }
        case 0xC8, 0x25, 0xCA, 0x35:  // READ/WRITE DMA (EXT)
            let extended = command == 0x25 || command == 0x35
            let count = extended ? Int(sectorCount.high) << 8 | Int(sectorCount.low) : Int(sectorCount.low)
            let sectors = count == 0 ? (extended ? 65536 : 256) : count
            let start = extended ? lba48 : lba28
            guard device & 0x40 != 0, disk.contains(sector: start, count: sectors) else { return abort(0x10) }
            dmaRequest = DMARequest(sector: start, count: sectors, toMemory: command == 0xC8 || command == 0x25)
            status = Status.ready | Status.dataRequest
            busMaster.transferIfStarted()
        case 0xE7, 0xEA:
            do {
                try disk.flush()
                status = Status.ready
                raiseInterrupt()
            } catch { abort() }
        case 0xEF where features == 0x03:
            // SET FEATURES / set transfer mode: PIO (0x00, 0x01, 0x08-0x0C) or multiword DMA
            // 0-2 (0x20-0x22), which IDENTIFY then reports as selected; anything else is aborted.
            let mode = sectorCount.low
            switch mode {
            case 0x00, 0x01, 0x08...0x0C: break
            case 0x20...0x22: selectedMultiwordDMA = Int(mode & 0x07)
            default: return abort()
            }
            status = Status.ready
            raiseInterrupt()
        case 0xEF, 0x91, 0xE0, 0xE1, 0xE3, 0xE5:  // set features, idle, check power
            status = Status.ready
            raiseInterrupt()
        default: abort()
        }
    }

    private func loadSector() {
        do {
            try buffer.withUnsafeMutableBytes { try disk.read(into: $0, at: currentSector * 512) }
            position = 0
            status = Status.ready | Status.dataRequest
            raiseInterrupt()
        } catch { abort() }
    }

    private func sectorDone() {
        if writing {
            do { try buffer.withUnsafeBytes { try disk.write(from: $0, at: currentSector * 512) } } catch { return abort() }
        }
        remaining -= 1
        currentSector += 1
        if remaining <= 0 {
            status = Status.ready
            position = 512
            if writing { raiseInterrupt() }
            writing = false
        } else if writing {
            position = 0
            raiseInterrupt()
        } else {
            loadSector()
        }
    }

    private func identify() {
        var words = [UInt16](repeating: 0, count: 256)
        func text(_ string: String, at start: Int, words count: Int) {
            let bytes = Array(string.utf8) + Array(repeating: UInt8(ascii: " "), count: 2 * count)
            for index in 0..<count { words[start + index] = UInt16(bytes[2 * index]) << 8 | UInt16(bytes[2 * index + 1]) }
        }
        let total = disk.sectors
        words[0] = 0x0040  // fixed disk
        text("HVB0001", at: 10, words: 10)
        text("1.0", at: 23, words: 4)
        text("hvbench IDE disk", at: 27, words: 20)
        words[47] = 0x8001
        words[49] = 1 << 9 | 1 << 8  // LBA, DMA
        words[53] = 0x0006  // words 64-70 and 88 are valid
        // Multiword DMA 0-2 (what the PIIX's bus master does), PIO 3-4, 120 ns cycles.
        words[63] = 0x0007 | (selectedMultiwordDMA.map { 1 << (8 + $0) } ?? 0)
        words[64] = 0x0003
        for index in 65...68 { words[index] = 120 }
        words[60] = UInt16(truncatingIfNeeded: min(total, 0x0FFF_FFFF))
        words[61] = UInt16(truncatingIfNeeded: min(total, 0x0FFF_FFFF) >> 16)
        words[80] = 0x007E  // ATA-1..6
        words[83] = 1 << 14 | 1 << 10  // LBA48 supported
        words[86] = 1 << 10  // LBA48 enabled
        for index in 0..<4 { words[100 + index] = UInt16(truncatingIfNeeded: total >> (16 * UInt64(index))) }
        for (index, word) in words.enumerated() {
            buffer[2 * index] = UInt8(truncatingIfNeeded: word)
            buffer[2 * index + 1] = UInt8(truncatingIfNeeded: word >> 8)
        }
        writing = false
        remaining = 1
        position = 0
        status = Status.ready | Status.dataRequest
        raiseInterrupt()
    }

    /// The bus master moves the pending DMA request's data: `move(sector, bytes, toMemory)`
    /// copies each part between the disk and guest memory. Ends the command either way.
    func performDMA(_ move: (DMARequest) throws -> Bool) {
        guard let request = dmaRequest else { return }
        dmaRequest = nil
        do {
            guard try move(request) else { return abort() }
            status = Status.ready
            raiseInterrupt()
        } catch { abort() }
    }
}

extension IDEDisk: Device {
    public var name: String { "ide" }
    /// The primary channel's legacy ports and IRQ 14, where every PC has them, and the PIIX
    /// bus-master function on the PCI bus.
    public func attach(to platform: Platform) throws {
        try platform.portBus.insert(commandBlock, at: Self.commandBase, length: 8)
        try platform.portBus.insert(controlBlock, at: Self.controlPort, length: 1)
        interruptLine = InterruptLine(gsi: Self.interruptInput, controller: platform.interrupts)
        memory = platform.memory
        busMaster.ports = platform.portBus
        try platform.pci().plug(busMaster)
    }
}
