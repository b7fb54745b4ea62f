/// A 16550A UART: transmit is instantaneous (THR is empty again as soon as it is written),
/// receive is never ready. Registers behave as the datasheet says where a guest can observe them
/// (DLAB-switched divisor latch, scratch, LCR/MCR/IER storage), and so does the transmitter-empty
/// interrupt that Linux's tty layer waits for: pending when IER.ETBEI is set while THR is empty
/// and after each THR write, cleared by a THR write or an IIR read that reports it, and reaching
/// IRQ 4 only with MCR.OUT2 set (the PC's gate). A polling guest (IER 0) never sees it.
public final class Serial16550: BusDevice {
    public static let com1Base: UInt64 = 0x3F8
    public static let registerCount: UInt64 = 8

    private let transmit: (UInt8) -> Void
    private let interruptLine: InterruptLine?
    private var transmitterEmptyPending = false
    private var interruptEnable: UInt8 = 0
    private var lineControl: UInt8 = 0
    private var modemControl: UInt8 = 0
    private var scratch: UInt8 = 0
    private var divisorLow: UInt8 = 0x0C  // 9600 baud at reset
    private var divisorHigh: UInt8 = 0
    private var fifoControl: UInt8 = 0

    private static let lineStatusTransmitterEmpty: UInt8 = 0x60  // THRE | TEMT
    /// The ISA interrupt every PC wires COM1 to.
    public static let interruptInput = 4

    public init(transmit: @escaping (UInt8) -> Void, interruptLine: InterruptLine? = nil) {
        self.transmit = transmit
        self.interruptLine = interruptLine
    }

    /// The transmitter-empty interrupt is enabled and pending (the only source this UART has).
    private var transmitterEmptyInterrupt: Bool { transmitterEmptyPending && interruptEnable & 0x02 != 0 }

    private func updateInterruptLine() {
        interruptLine?.set(transmitterEmptyInterrupt && modemControl & 0x08 != 0)
    }

    private var divisorLatchAccess: Bool { lineControl & 0x80 != 0 }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let value: UInt8
        switch offset {
        case 0: value = divisorLatchAccess ? divisorLow : 0  // RBR: nothing received
        case 1: value = divisorLatchAccess ? divisorHigh : interruptEnable
        case 2:
            // IIR: transmitter empty (0x02) or no interrupt (0x01); reading it clears the former.
            let fifos: UInt8 = fifoControl & 1 != 0 ? 0xC0 : 0
            value = fifos | (transmitterEmptyInterrupt ? 0x02 : 0x01)
            if transmitterEmptyInterrupt {
                transmitterEmptyPending = false
                updateInterruptLine()
            }
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
            if divisorLatchAccess {
                divisorLow = value
            } else {
                // The write clears the interrupt; the character leaves at once and THR is
                // empty again: a new edge on the line.
                transmitterEmptyPending = false
                updateInterruptLine()
                transmit(value)
                transmitterEmptyPending = true
                updateInterruptLine()
            }
        case 1:
            if divisorLatchAccess {
                divisorHigh = value
            } else {
                // Enabling ETBEI while THR is empty raises the interrupt at once.
                if interruptEnable & 0x02 == 0 && value & 0x02 != 0 { transmitterEmptyPending = true }
                interruptEnable = value & 0x0F
                updateInterruptLine()
            }
        case 2: fifoControl = value
        case 3: lineControl = value
        case 4:
            modemControl = value & 0x1F
            updateInterruptLine()
        case 7: scratch = value
        default: break  // LSR and MSR are read-only
        }
    }
}
