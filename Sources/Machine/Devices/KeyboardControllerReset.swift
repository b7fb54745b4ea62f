/// The one job of the PC keyboard controller (8042) that a VM without a keyboard still needs:
/// command 0xFE on port 0x64 pulses the CPU's reset line, the oldest way a PC reboots and the
/// one Linux tries after ACPI's. Status reads say both buffers are empty, so a guest waiting
/// for the input buffer goes on; everything else is ignored. The VMM ends the VM with
/// "guest reset the machine": hvbench's VMs do not restart.
public final class KeyboardControllerReset: BusDevice {
    public static let port: UInt64 = 0x64
    static let pulseReset: UInt8 = 0xFE
    /// System flag set (the self-test passed), input and output buffers empty.
    static let status: UInt8 = 0x04
    private let onReset: () -> Void

    public init(onReset: @escaping () -> Void) { self.onReset = onReset }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.storeLittleEndian(UInt64(Self.status))
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        if UInt8(truncatingIfNeeded: data.littleEndianValue) == Self.pulseReset { onReset() }
    }
}
