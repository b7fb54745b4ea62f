/// The ACPI PM1a event and control blocks the FADT names (`FirmwareTables`), at QEMU's PIIX4
/// ports: PM1a_STS/PM1a_EN (0x600, 2 bytes each) and PM1a_CNT (0x604). The machine is always in
/// ACPI mode (SCI_EN reads 1; the FADT has no SMI command port). Writing SLP_EN with the sleep
/// type the DSDT's \_S5 names turns the machine off, which ends the VM; other sleep states are
/// not modelled and are ignored, as are the event bits (no ACPI event is ever raised).
public final class ACPIPowerControl: BusDevice {
    /// The block's length from `FirmwareTables.pm1aEventPort`: events 0-3, control 4-5.
    public static let length: UInt64 = 6
    static let sciEnabled: UInt16 = 1 << 0
    static let sleepEnable: UInt16 = 1 << 13
    private var enable: UInt16 = 0
    private var control: UInt16 = sciEnabled
    private let onPowerOff: () -> Void

    public init(onPowerOff: @escaping () -> Void) {
        self.onPowerOff = onPowerOff
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let registers = UInt64(0) | UInt64(enable) << 16 | UInt64(control) << 32  // PM1a_STS is always 0
        data.storeLittleEndian(registers >> (8 * offset))
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        let value = data.littleEndianValue
        // Byte-wise, so that any access width and alignment within the block lands where it should.
        for index in 0..<UInt64(data.count) {
            let byte = UInt16(truncatingIfNeeded: value >> (8 * index))
            switch offset + index {
            case 2: enable = (enable & 0xFF00) | byte
            case 3: enable = (enable & 0x00FF) | byte << 8
            case 4: control = (control & 0xFF00) | byte | Self.sciEnabled
            case 5: control = (control & 0x00FF) | byte << 8
            default: break  // PM1a_STS: write-1-to-clear bits that are never set
            }
        }
        guard offset + UInt64(data.count) > 5, control & Self.sleepEnable != 0 else { return }
        control &= ~Self.sleepEnable  // SLP_EN reads as 0
        if (control >> 10) & 7 == FirmwareTables.softOffSleepType { onPowerOff() }
    }
}
