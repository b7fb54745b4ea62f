import Synchronization

/// The tables an operating system reads to find its processors and interrupt controllers, as
/// PC firmware leaves them in the BIOS area: an Intel MultiProcessor table (MP specification
/// 1.4) and ACPI tables (RSDP, RSDT, XSDT, MADT, a minimal FADT whose PM1a control block makes
/// ACPI power-off work, and a DSDT with the PCI host bridge and the S5 sleep type). Kernels that bring up
/// their application processors by the book find the CPUs here; the VMM's `ACPIPowerControl`
/// answers at the PM1 ports the FADT names.
public enum FirmwareTables {
    /// What the tables describe.
    public struct Description: Equatable, Sendable {
        /// Local APIC IDs 0..<cpuCount; CPU 0 is the bootstrap processor.
        public var cpuCount: Int
        public var localAPICAddress: UInt32 = 0xFEE0_0000
        public var ioAPICAddress: UInt32 = 0xFEC0_0000
        public var ioAPICID: UInt8 = 0
        /// PCI slots whose INTA# the tables route (slot n on pin 16 + n mod 4, level, as the
        /// platform wires it).
        public var pciSlots = 0..<8

        public init(cpuCount: Int) { self.cpuCount = cpuCount }
    }

    /// Where each table goes: all inside the BIOS area (0xE0000-0xFFFFF), where a kernel scans
    /// for the MP floating pointer and the RSDP on 16-byte boundaries.
    public static let mpFloatingPointer: UInt64 = 0xF_0000
    static let mpConfiguration: UInt64 = 0xF_0040
    public static let rsdp: UInt64 = 0xF_1000
    static let rsdt: UInt64 = 0xF_1040
    static let xsdt: UInt64 = 0xF_1080
    static let madt: UInt64 = 0xF_1100
    static let fadt: UInt64 = 0xF_1400
    static let dsdt: UInt64 = 0xF_1500
    static let areaEnd: UInt64 = 0xF_2000

    /// The most CPUs the area has room for (the MP table's processor entries are 20 bytes).
    public static let maximumCPUs = 64
    /// What hvbench's benchmark guest starts (its kernel's MAX_CPUS): `run --vcpus` stays within it.
    public static let maximumGuestCPUs = 8

    /// The sleep type the DSDT's \_S5 names and `ACPIPowerControl` powers off on.
    public static let softOffSleepType: UInt16 = 5
    /// PM1a event block (status, enable: 4 bytes) and control block (2 bytes), at QEMU's PIIX4
    /// addresses.
    public static let pm1aEventPort: UInt16 = 0x600
    public static let pm1aControlPort: UInt16 = 0x604
    /// The ACPI PM timer (`ACPIPMTimer`), at PIIX4's PMBASE + 8 as QEMU places it.
    public static let pmTimerPort: UInt16 = 0x608
    /// The SCI's ISA interrupt (none is ever raised: no ACPI events are modelled).
    static let sciInterrupt: UInt16 = 9

    public enum TableError: Error, Equatable, CustomStringConvertible {
        case cpuCount(Int)
        public var description: String {
            switch self {
            case .cpuCount(let count): return "firmware tables describe 1 to \(FirmwareTables.maximumCPUs) CPUs, not \(count)"
            }
        }
    }

    /// Writes every table into guest memory (which must cover the BIOS area).
    public static func write(_ description: Description, into memory: GuestMemory) throws {
        for (address, bytes) in try built(description) { try memory.write(bytes, at: address) }
    }

    /// The tables last built, kept: every boot of a run asks for the same ones, and building
    /// them (the AML above all) was a tenth of the emulator's start-up.
    private static let lastBuilt = Mutex<(Description, [(address: UInt64, bytes: [UInt8])])?>(nil)

    private static func built(_ description: Description) throws -> [(address: UInt64, bytes: [UInt8])] {
        if let (kept, tables) = lastBuilt.withLock({ $0 }), kept == description { return tables }
        let tables = try build(description)
        lastBuilt.withLock { $0 = (description, tables) }
        return tables
    }

    /// The tables and their guest-physical addresses.
    public static func build(_ description: Description) throws -> [(address: UInt64, bytes: [UInt8])] {
        guard (1...maximumCPUs).contains(description.cpuCount) else { throw TableError.cpuCount(description.cpuCount) }
        let configuration = mpConfigurationTable(description)
        let tables: [(UInt64, [UInt8])] = [
            (mpFloatingPointer, mpFloatingPointerStructure()),
            (mpConfiguration, configuration),
            (rsdp, rootPointer()),
            (rsdt, systemTable("RSDT", revision: 1, body: [fadt, madt].flatMap { le(UInt32($0)) })),
            (xsdt, systemTable("XSDT", revision: 1, body: [fadt, madt].flatMap { le($0) })),
            (madt, multipleAPICTable(description)),
            (fadt, fixedDescriptionTable()),
            (dsdt, differentiatedDescriptionTable(description)),
        ]
        precondition(mpConfiguration + UInt64(configuration.count) <= rsdp, "MP table overlaps the RSDP")
        return tables
    }

    // MARK: MP specification 1.4

    static func mpFloatingPointerStructure() -> [UInt8] {
        var bytes = Array("_MP_".utf8) + le(UInt32(mpConfiguration))
        bytes += [1, 4, 0]  // length in 16-byte units, spec revision 1.4, checksum
        bytes += [0, 0, 0, 0, 0]  // feature bytes: a configuration table follows; no IMCR (virtual wire)
        return checksummed(bytes, at: 10)
    }

    static func mpConfigurationTable(_ description: Description) -> [UInt8] {
        var entries: [UInt8] = []
        var count = 0
        func add(_ entry: [UInt8]) {
            entries += entry
            count += 1
        }
        // CPUID signature family 6 and the FPU/APIC feature flags, as firmware reports them.
        for cpu in 0..<description.cpuCount {
            add(
                [0, UInt8(cpu), 0x14, cpu == 0 ? 0x03 : 0x01] + le(UInt32(0x600)) + le(UInt32(0x201))
                    + [UInt8](repeating: 0, count: 8))
        }
        add([1, 0] + Array("PCI   ".utf8))
        add([1, 1] + Array("ISA   ".utf8))
        add([2, description.ioAPICID, 0x11, 1] + le(description.ioAPICAddress))
        for irq in 0..<16 where irq != 2 {  // IRQ 2 is the cascade: no device behind it
            add([3, 0] + le(UInt16(0)) + [1, UInt8(irq), description.ioAPICID, UInt8(irq)])  // INT, bus defaults
        }
        for slot in description.pciSlots {
            // Source bus IRQ: device number << 2 | INTA#; active-high (01), level (11).
            add([3, 0] + le(UInt16(0b1101)) + [0, UInt8(slot << 2), description.ioAPICID, UInt8(16 + slot % 4)])
        }
        add([4, 3] + le(UInt16(0)) + [1, 0, 0xFF, 0])  // ExtINT to LINT0 of every local APIC
        add([4, 1] + le(UInt16(0)) + [1, 0, 0xFF, 1])  // NMI to LINT1
        var header = Array("PCMP".utf8) + le(UInt16(44 + entries.count)) + [4, 0]
        header += Array("HVBENCH ".utf8) + Array("VIRTUAL PC  ".utf8)
        header += le(UInt32(0)) + le(UInt16(0)) + le(UInt16(count)) + le(description.localAPICAddress)
        header += le(UInt16(0)) + [0, 0]  // no extended table
        return checksummed(header + entries, at: 7)
    }

    // MARK: ACPI

    static let oemID = Array("HVBNCH".utf8)

    static func rootPointer() -> [UInt8] {
        var bytes = Array("RSD PTR ".utf8) + [0] + oemID + [2] + le(UInt32(rsdt))
        bytes = checksummed(bytes, at: 8)  // the ACPI 1.0 checksum covers the first 20 bytes
        bytes += le(UInt32(36)) + le(xsdt) + [0, 0, 0, 0]
        return checksummed(bytes, at: 32)
    }

    /// A system description table: the 36-byte header, then `body`.
    static func systemTable(_ signature: String, revision: UInt8, body: [UInt8]) -> [UInt8] {
        var bytes = Array(signature.utf8) + le(UInt32(36 + body.count)) + [revision, 0] + oemID
        bytes += Array("HVBENCH ".utf8) + le(UInt32(1)) + Array("HVBN".utf8) + le(UInt32(1))
        return checksummed(bytes + body, at: 9)
    }

    static func multipleAPICTable(_ description: Description) -> [UInt8] {
        var body = le(description.localAPICAddress) + le(UInt32(0))  // no dual-8259 compatibility promised
        for cpu in 0..<description.cpuCount {
            body += [0, 8, UInt8(cpu), UInt8(cpu)] + le(UInt32(1))  // processor local APIC, enabled
        }
        body += [1, 12, description.ioAPICID, 0] + le(description.ioAPICAddress) + le(UInt32(0))
        body += [4, 6, 0xFF] + le(UInt16(0)) + [1]  // NMI on LINT1 of every processor
        return systemTable("APIC", revision: 3, body: body)
    }

    /// FADT revision 3 (ACPI 2.0 layout, 244 bytes): hardware fixed in ACPI mode (no SMI
    /// command port), a PM1a event and control block, the DSDT.
    static func fixedDescriptionTable() -> [UInt8] {
        var body = [UInt8](repeating: 0, count: 244 - 36)
        func put(_ bytes: [UInt8], at offset: Int) { body.replaceSubrange(offset - 36..<offset - 36 + bytes.count, with: bytes) }
        put(le(UInt32(dsdt)), at: 40)
        put(le(sciInterrupt), at: 46)
        put(le(UInt32(pm1aEventPort)), at: 56)
        put(le(UInt32(pm1aControlPort)), at: 64)
        put(le(UInt32(pmTimerPort)), at: 76)  // PM_TMR_BLK
        put([4, 2], at: 88)  // PM1 event block 4 bytes, control block 2
        body[91 - 36] = 4  // PM_TMR_LEN
        body[108 - 36] = 0x32  // CENTURY: the CMOS byte that holds it (`CMOSClock`)
        // WBINVD works; the power button is a control method (none); the PM timer has 32 bits.
        put(le(UInt32(1 << 0 | 1 << 4 | 1 << 8)), at: 112)
        put(le(dsdt), at: 140)
        put(genericAddress(port: pm1aEventPort, bits: 32), at: 148)
        put(genericAddress(port: pm1aControlPort, bits: 16), at: 172)
        put(genericAddress(port: pmTimerPort, bits: 32), at: 208)  // X_PM_TMR_BLK
        return systemTable("FACP", revision: 3, body: body)
    }

    /// An ACPI generic address structure for a block of I/O ports.
    static func genericAddress(port: UInt16, bits: UInt8) -> [UInt8] {
        [1, bits, 0, bits == 32 ? 3 : 2] + le(UInt64(port))  // system I/O, dword or word access
    }

    /// Where PCI memory BARs may go: above the most RAM a VM has (3 GiB) and below the IOAPIC.
    public static let pciMemoryWindow: ClosedRange<UInt64> = 0xC000_0000...0xFEBF_FFFF

    /// The DSDT: the PCI host bridge an ACPI OS looks for before it scans PCI (Linux scans no
    /// bus that ACPI does not name), and Name(\_S5, Package(4) {5, 5, 0, 0}), the sleep type an
    /// OS writes to PM1a_CNT.SLP_TYP to turn the machine off.
    static func differentiatedDescriptionTable(_ description: Description) -> [UInt8] {
        let sleepType = UInt8(softOffSleepType)
        let softOff: [UInt8] = [0x08] + Array("_S5_".utf8) + [0x12, 0x08, 0x04, 0x0A, sleepType, 0x0A, sleepType, 0x00, 0x00]
        return systemTable("DSDT", revision: 2, body: AML.scope("\\_SB", pciHostBridge(description)) + softOff)
    }

    /// Device(PCI0): a PNP0A03 root bridge decoding bus 0-255, configuration mechanism 1 at
    /// 0xCF8, the I/O ports outside it and the PCI memory window; its _PRT routes each slot's
    /// INTA# to the IOAPIC input the MP table names (16 + slot mod 4). Linux treats such lines
    /// as level-triggered and active-low; the IOAPICs here take levels as logical, as the
    /// platform drives them (InterruptController), so the polarity changes nothing.
    static func pciHostBridge(_ description: Description) -> [UInt8] {
        let resources =
            AML.busNumbers(0...0xFF) + AML.ioPorts(0xCF8, count: 8) + AML.ioWindow(0...0xCF7) + AML.ioWindow(0xD00...0xFFFF)
            + AML.memoryWindow(pciMemoryWindow) + AML.endTag
        let routes = description.pciSlots.map { slot in
            AML.packageObject([
                AML.integer(UInt64(slot) << 16 | 0xFFFF), AML.integer(0), AML.integer(0), AML.integer(UInt64(16 + slot % 4)),
            ])
        }
        return AML.device(
            "PCI0",
            AML.name("_HID", AML.eisaID("PNP0A03")) + AML.name("_UID", AML.integer(0))
                + AML.name("_CRS", AML.buffer(resources)) + AML.name("_PRT", AML.packageObject(routes)))
    }

    // MARK: Encoding

    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }

    /// `bytes` with the byte at `index` set so that they sum to zero (mod 256).
    static func checksummed(_ bytes: [UInt8], at index: Int) -> [UInt8] {
        var bytes = bytes
        bytes[index] = 0
        bytes[index] = 0 &- bytes.reduce(0, &+)
        return bytes
    }
}
