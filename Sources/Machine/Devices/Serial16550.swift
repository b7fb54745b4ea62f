/// A 16550A UART as seen by a polling guest: transmit is instantaneous (THR always empty),
/// receive is never ready, interrupts are never raised. Registers behave as the datasheet says
/// where a guest can observe them (DLAB-switched divisor latch, scratch, LCR/MCR/IER storage).
public final class Serial16550: BusDevice {
    public static let com1Base: UInt64 = 0x3F8
    public static let registerCount: UInt64 = 8

    private let transmit: (UInt8) -> Void
    private var interruptEnable: UInt8 = 0
    private var lineControl: UInt8 = 0
    private var modemControl: UInt8 = 0
    private var scratch: UInt8 = 0
    private var divisorLow: UInt8 = 0x0C  // 9600 baud at reset
    private var divisorHigh: UInt8 = 0
    private var fifoControl: UInt8 = 0

    private static let lineStatusTransmitterEmpty: UInt8 = 0x60  // THRE | TEMT

    public init(transmit: @escaping (UInt8) -> Void) {
        self.transmit = transmit
    }

    private var divisorLatchAccess: Bool { lineControl & 0x80 != 0 }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let value: UInt8
        switch offset {
        case 0: value = divisorLatchAccess ? divisorLow : 0  // RBR: nothing received
        case 1: value = divisorLatchAccess ? divisorHigh : interruptEnable
        case 2: value = fifoControl & 1 != 0 ? 0xC1 : 0x01  // IIR: no interrupt pending
        case 3: value = lineControl
        case 4: value = modemControl
        case 5: value = Self.lineStatusTransmitterEmpty
        case 6: value = 0xB0  // MSR: CTS, DSR, DCD
        case 7: value = scratch
        default: value = 0xFF
        }
        data.storeLittleEndian(UInt64(value))
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        let value = UInt8(truncatingIfNeeded: data.littleEndianValue)
        switch offset {
        case 0:
            if divisorLatchAccess { divisorLow = value } else { transmit(value) }
        case 1:
            if divisorLatchAccess { divisorHigh = value } else { interruptEnable = value & 0x0F }
        case 2: fifoControl = value
        case 3: lineControl = value
        case 4: modemControl = value & 0x1F
        case 7: scratch = value
        default: break  // LSR and MSR are read-only
        }
    }
}
