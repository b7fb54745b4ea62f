/// QEMU's isa-debug-exit at port 0xF4: a write of `value` ends the VM with exit status
/// `(value << 1) | 1`, so a kernel built for `qemu -device isa-debug-exit,iobase=0xf4`
/// reports the same status under hvbench.
public final class DebugExitDevice: BusDevice {
    public static let port: UInt64 = 0xF4
    private let onExit: (Int32) -> Void

    public init(onExit: @escaping (Int32) -> Void) {
        self.onExit = onExit
    }

    public static func exitStatus(forValue value: UInt64) -> Int32 {
        Int32(truncatingIfNeeded: (value << 1) | 1)
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.storeLittleEndian(UInt64.max)
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        onExit(Self.exitStatus(forValue: data.littleEndianValue))
    }
}
