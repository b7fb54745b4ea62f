import Testing

@testable import Machine

@Suite struct SerialTests {
    func write(_ uart: Serial16550, _ offset: UInt64, _ value: UInt8) {
        [value].withUnsafeBytes { uart.write(offset: offset, from: $0) }
    }
    func read(_ uart: Serial16550, _ offset: UInt64) -> UInt8 {
        var value: [UInt8] = [0]
        value.withUnsafeMutableBytes { uart.read(offset: offset, into: $0) }
        return value[0]
    }

    @Test func transmitsWhatIsWrittenToTHR() {
        var sent: [UInt8] = []
        let uart = Serial16550 { sent.append($0) }
        for byte in "ok\n".utf8 { write(uart, 0, byte) }
        #expect(sent == Array("ok\n".utf8))
    }

    @Test func lineStatusSaysTransmitterEmptyAndNoData() {
        let uart = Serial16550 { _ in }
        #expect(read(uart, 5) & 0x60 == 0x60)
        #expect(read(uart, 5) & 0x01 == 0)
    }

    @Test func divisorLatchIsSelectedByDLAB() {
        var sent: [UInt8] = []
        let uart = Serial16550 { sent.append($0) }
        write(uart, 3, 0x83)  // DLAB=1, 8N1
        write(uart, 0, 0x01)  // divisor low: not transmitted
        write(uart, 1, 0x00)
        #expect(read(uart, 0) == 0x01)
        write(uart, 3, 0x03)  // DLAB=0
        #expect(read(uart, 3) == 0x03)
        write(uart, 0, 0x41)
        #expect(sent == [0x41])
    }

    @Test func scratchRegisterHoldsItsValue() {
        let uart = Serial16550 { _ in }
        write(uart, 7, 0x5A)
        #expect(read(uart, 7) == 0x5A)
    }
}

@Suite struct SmallDeviceTests {
    @Test func debugExitUsesQEMUsStatusConvention() {
        var statuses: [Int32] = []
        let device = DebugExitDevice { statuses.append($0) }
        [UInt8(0)].withUnsafeBytes { device.write(offset: 0, from: $0) }
        [UInt8(0x7F)].withUnsafeBytes { device.write(offset: 0, from: $0) }
        #expect(statuses == [1, 255])
        #expect(DebugExitDevice.exitStatus(forValue: 2) == 5)
    }

    @Test func milestonesAreTimestampedInOrderAndBounded() {
        let device = BootMilestoneDevice()
        for code in [UInt8(1), 2, 3] { [code].withUnsafeBytes { device.write(offset: 0, from: $0) } }
        #expect(device.milestones.map(\.code) == [1, 2, 3])
        #expect(device.milestones[0].nanoseconds <= device.milestones[2].nanoseconds)
        for _ in 0..<1000 { [UInt8(9)].withUnsafeBytes { device.write(offset: 0, from: $0) } }
        #expect(device.milestones.count == 256)
    }
}
