/// The debug registers as software sees them through `mov`: the fixed bits read as the
/// architecture defines them (DR6's reserved bits 4-11 and 16-31 as 1, bit 12 as 0; DR7's bit 10
/// as 1, bits 11, 12, 14 and 15 as 0), with the values KVM gives a vCPU at reset.
public struct DebugRegisters: Equatable, Sendable {
    /// DR0-DR3: linear addresses of up to four breakpoints.
    public var addresses: [UInt64] = [0, 0, 0, 0]
    public var dr6: UInt64 = DebugRegisters.dr6Fixed
    public var dr7: UInt64 = DebugRegisters.dr7Fixed

    /// DR6: bits that read 1 whatever is written (RTM's bit 16 too: no RTM here).
    static let dr6Fixed: UInt64 = 0xFFFF_0FF0
    /// DR6: B0-B3, BD, BS, BT: what software may write.
    static let dr6Writable: UInt64 = 0x0000_E00F
    static let dr7Fixed: UInt64 = 0x400
    /// DR7: L0-G3, LE, GE, RTM, GD and the length/type fields.
    static let dr7Writable: UInt64 = 0xFFFF_2BFF
    /// DR7.GD: the next debug-register access raises #DB.
    static let generalDetect: UInt64 = 1 << 13
    /// DR6.BD: that #DB was a general detect.
    static let breakpointDetected: UInt64 = 1 << 13

    public init() {}

    func read(_ index: Int) -> UInt64 {
        switch index {
        case 0...3: return addresses[index]
        case 6: return dr6
        default: return dr7
        }
    }

    /// A value with bits set in DR6's or DR7's upper half is #GP(0) (64-bit mode).
    mutating func write(_ index: Int, _ value: UInt64) throws(X86Fault) {
        switch index {
        case 0...3: addresses[index] = value
        case 6:
            guard value >> 32 == 0 else { throw .exception(vector: X86Vector.generalProtection, errorCode: 0) }
            dr6 = value & Self.dr6Writable | Self.dr6Fixed
        default:
            guard value >> 32 == 0 else { throw .exception(vector: X86Vector.generalProtection, errorCode: 0) }
            dr7 = value & Self.dr7Writable | Self.dr7Fixed
        }
    }
}
