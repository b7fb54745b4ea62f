import Testing

@testable import Machine

/// The MP and ACPI tables, read back the way a kernel finds them: by scanning the BIOS area for
/// their signatures on 16-byte boundaries, checking every checksum, and following the pointers.
@Suite struct FirmwareTableTests {
    let memory: GuestMemory

    init() throws {
        memory = try GuestMemory(size: 2 << 20)
        try FirmwareTables.write(FirmwareTables.Description(cpuCount: 3), into: memory)
    }

    func bytes(_ address: UInt64, _ count: Int) throws -> [UInt8] { try memory.read(at: address, count: count) }
    func u16(_ address: UInt64) throws -> UInt64 { UInt64(try memory.readValue(UInt16.self, at: address)) }
    func u32(_ address: UInt64) throws -> UInt64 { UInt64(try memory.readValue(UInt32.self, at: address)) }
    func sum(_ address: UInt64, _ count: Int) throws -> UInt8 { try bytes(address, count).reduce(0, &+) }

    /// The first 16-byte-aligned address in the BIOS area that starts with `signature`.
    func scan(for signature: String) throws -> UInt64? {
        let wanted = Array(signature.utf8)
        return try stride(from: UInt64(0xE_0000), to: 0x10_0000, by: 16).first { try bytes($0, wanted.count) == wanted }
    }

    /// An ACPI table by signature through the XSDT, after checking its checksum.
    func acpiTable(_ signature: String) throws -> UInt64 {
        let rsdp = try #require(try scan(for: "RSD PTR "))
        let xsdt = try memory.readValue(UInt64.self, at: rsdp + 24)
        let count = (Int(try u32(xsdt + 4)) - 36) / 8
        for index in 0..<count {
            let table = try memory.readValue(UInt64.self, at: xsdt + 36 + UInt64(8 * index))
            guard try bytes(table, 4) == Array(signature.utf8) else { continue }
            #expect(try sum(table, Int(try u32(table + 4))) == 0, "\(signature) checksum")
            return table
        }
        Issue.record("no \(signature) in the XSDT")
        return 0
    }

    @Test func theRSDPIsFoundAndBothChecksumsHold() throws {
        let rsdp = try #require(try scan(for: "RSD PTR "))
        #expect(rsdp == FirmwareTables.rsdp)
        #expect(try sum(rsdp, 20) == 0 && sum(rsdp, 36) == 0)
        #expect(try bytes(rsdp + 15, 1) == [2], "ACPI 2.0+: an XSDT")
        let xsdt = try memory.readValue(UInt64.self, at: rsdp + 24)
        let rsdt = try u32(rsdp + 16)
        #expect(try bytes(xsdt, 4) == Array("XSDT".utf8) && bytes(rsdt, 4) == Array("RSDT".utf8))
        #expect(try sum(xsdt, Int(try u32(xsdt + 4))) == 0 && sum(rsdt, Int(try u32(rsdt + 4))) == 0)
        // The RSDT lists the same tables, with 32-bit pointers.
        #expect(try u32(rsdt + 4) == 36 + 8 && u32(xsdt + 4) == 36 + 16)
        #expect(try u32(rsdt + 36) == memory.readValue(UInt64.self, at: xsdt + 36))
        #expect(try u32(rsdt + 40) == memory.readValue(UInt64.self, at: xsdt + 44))
    }

    @Test func theMADTListsEveryLocalAPICAndTheIOAPIC() throws {
        let madt = try acpiTable("APIC")
        #expect(try u32(madt + 36) == 0xFEE0_0000)
        var offset = madt + 44
        var apicIDs: [UInt8] = []
        var ioAPICs: [UInt64] = []
        var nmiLINT: UInt8?
        while offset < madt + (try u32(madt + 4)) {
            let entry = try bytes(offset, 2)
            switch entry[0] {
            case 0:
                #expect(try u32(offset + 4) & 1 == 1, "enabled")
                apicIDs.append(try bytes(offset + 3, 1)[0])
            case 1: ioAPICs.append(try u32(offset + 4))
            case 4: nmiLINT = try bytes(offset + 5, 1)[0]
            default: Issue.record("unexpected MADT entry type \(entry[0])")
            }
            #expect(entry[1] > 0)
            offset += UInt64(entry[1])
        }
        #expect(offset == madt + (try u32(madt + 4)), "entries fill the table exactly")
        #expect(apicIDs == [0, 1, 2] && ioAPICs == [0xFEC0_0000] && nmiLINT == 1)
    }

    @Test func theFADTNamesThePM1BlocksAndADSDTWithS5() throws {
        let fadt = try acpiTable("FACP")
        #expect(try u32(fadt + 4) == 244 && bytes(fadt + 8, 1) == [3])
        #expect(try u32(fadt + 48) == 0, "no SMI command port: already in ACPI mode")
        #expect(try u32(fadt + 56) == UInt64(FirmwareTables.pm1aEventPort))
        #expect(try u32(fadt + 64) == UInt64(FirmwareTables.pm1aControlPort))
        #expect(try bytes(fadt + 88, 2) == [4, 2])
        #expect(try bytes(fadt + 108, 1) == [0x32], "the century's CMOS byte")
        #expect(try memory.readValue(UInt64.self, at: fadt + 172 + 4) == UInt64(FirmwareTables.pm1aControlPort))
        let dsdt = try u32(fadt + 40)
        #expect(try memory.readValue(UInt64.self, at: fadt + 140) == dsdt)
        #expect(try bytes(dsdt, 4) == Array("DSDT".utf8) && sum(dsdt, Int(try u32(dsdt + 4))) == 0)
        // Name(_S5_, Package(4) {5, 5, 0, 0})
        let aml = try bytes(dsdt + 36, Int(try u32(dsdt + 4)) - 36)
        #expect(Array(aml.suffix(14)) == [0x08] + Array("_S5_".utf8) + [0x12, 0x08, 0x04, 0x0A, 5, 0x0A, 5, 0, 0])
        // Scope(\_SB) { Device(PCI0) { Name(_HID, EisaId("PNP0A03")) ... } }: the bridge Linux scans.
        // PkgLength takes 1 to 4 bytes (its lead byte's top two bits count the extra ones).
        func afterPackageLength(_ index: Int) -> Int { index + 1 + Int(aml[index] >> 6) }
        #expect(aml[0] == 0x10 && Array(aml[afterPackageLength(1)..<afterPackageLength(1) + 5]) == [0x5C] + Array("_SB_".utf8))
        let device = try #require(aml.firstRange(of: [0x5B, 0x82]))
        let name = afterPackageLength(device.upperBound)
        #expect(Array(aml[name..<name + 4]) == Array("PCI0".utf8))
        #expect(aml.firstRange(of: Array("_HID".utf8) + [0x0C, 0x41, 0xD0, 0x0A, 0x03]) != nil)
        #expect(aml.firstRange(of: Array("_PRT".utf8)) != nil && aml.firstRange(of: Array("_CRS".utf8)) != nil)
    }

    @Test func theMPTableDescribesProcessorsBusesAndInterruptRouting() throws {
        let pointer = try #require(try scan(for: "_MP_"))
        #expect(try sum(pointer, 16) == 0 && bytes(pointer + 8, 2) == [1, 4])
        let table = try u32(pointer + 4)
        #expect(try bytes(table, 4) == Array("PCMP".utf8))
        let length = Int(try u16(table + 4))
        #expect(try sum(table, length) == 0 && bytes(table + 6, 1) == [4])
        #expect(try u32(table + 36) == 0xFEE0_0000)
        var processors: [(id: UInt8, bootstrap: Bool)] = []
        var routes: [(bus: UInt8, irq: UInt8, pin: UInt8, flags: UInt64)] = []
        var ioAPIC: UInt64?
        var offset = table + 44
        for _ in 0..<(try u16(table + 34)) {
            let type = try bytes(offset, 1)[0]
            switch type {
            case 0:
                let entry = try bytes(offset, 4)
                processors.append((entry[1], entry[3] & 2 != 0))
                offset += 20
                continue
            case 2: ioAPIC = try u32(offset + 4)
            case 3:
                let entry = try bytes(offset, 8)
                routes.append((entry[4], entry[5], entry[7], try u16(offset + 2)))
            default: break
            }
            offset += 8
        }
        #expect(offset == table + UInt64(length))
        #expect(processors.map(\.id) == [0, 1, 2] && processors.map(\.bootstrap) == [true, false, false])
        #expect(ioAPIC == 0xFEC0_0000)
        // ISA (bus 1) IRQ 14, the IDE disk's, on pin 14; PCI (bus 0) slot 1 INTA# on pin 17,
        // level-triggered and active-high.
        #expect(routes.contains { $0.bus == 1 && $0.irq == 14 && $0.pin == 14 && $0.flags == 0 })
        #expect(routes.contains { $0.bus == 0 && $0.irq == 1 << 2 && $0.pin == 17 && $0.flags == 0b1101 })
    }

    @Test func cpuCountsOutsideTheRoomAreErrors() throws {
        for count in [0, FirmwareTables.maximumCPUs + 1] {
            #expect(throws: FirmwareTables.TableError.cpuCount(count)) {
                try FirmwareTables.build(FirmwareTables.Description(cpuCount: count))
            }
        }
        // The largest table still ends before the ACPI tables start.
        let tables = try FirmwareTables.build(FirmwareTables.Description(cpuCount: FirmwareTables.maximumCPUs))
        let sorted = tables.sorted { $0.address < $1.address }
        for (a, b) in zip(sorted, sorted.dropFirst()) { #expect(a.address + UInt64(a.bytes.count) <= b.address) }
    }

    @Test func pm1aControlPowersOffOnlyWithTheS5SleepType() {
        var offs = 0
        let control = ACPIPowerControl { offs += 1 }
        func write16(_ offset: UInt64, _ value: UInt16) {
            withUnsafeBytes(of: value.littleEndian) { control.write(offset: offset, from: $0) }
        }
        func read16(_ offset: UInt64) -> UInt16 {
            var value: UInt16 = 0
            withUnsafeMutableBytes(of: &value) { control.read(offset: offset, into: $0) }
            return value
        }
        #expect(read16(4) & 1 == 1, "SCI_EN: in ACPI mode from the start")
        write16(4, 1 << 10 | 1 << 13)  // S1: not modelled
        #expect(offs == 0)
        write16(4, FirmwareTables.softOffSleepType << 10)  // the type without SLP_EN
        #expect(offs == 0)
        write16(2, 0x0100)  // PM1a_EN: stored, never raises anything
        #expect(read16(2) == 0x0100 && read16(0) == 0)
        withUnsafeBytes(of: UInt8(0x34)) { control.write(offset: 5, from: $0) }  // byte-wide: SLP_EN | SLP_TYP 5
        #expect(offs == 1)
        #expect(read16(4) & (1 << 13) == 0, "SLP_EN reads as 0")
    }
}
