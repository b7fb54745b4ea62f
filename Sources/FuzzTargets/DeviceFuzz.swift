import Foundation
import Machine

/// The register and queue interfaces of the device models, driven by a byte program: the first
/// bytes become guest RAM (rings, descriptors, buffers), the rest register reads and writes and
/// memory pokes. Whatever the program did, a reset must heal the device.
enum DeviceFuzz {
    static let ramSize: UInt64 = 1 << 20
    static let maximumSteps = 2048

    /// RAM from the input, in 64-byte runs at input-chosen addresses.
    static func guestMemory(_ input: inout FuzzInput) -> GuestMemory? {
        guard let memory = try? GuestMemory(size: ramSize) else { return nil }
        for _ in 0..<Int(input.byte() % 16) {
            let address = input.value(width: 4) % (ramSize - 64)
            try? memory.write(input.take(64), at: address)
        }
        return memory
    }

    /// One step of a register program against `device`; returns false when the input is used up.
    static func step(_ input: inout FuzzInput, _ device: BusDevice, span: UInt64, memory: GuestMemory) -> Bool {
        guard !input.isExhausted else { return false }
        let operation = input.byte() % 4
        let offset = input.value(width: 4) % span
        let width = input.width()
        switch operation {
        case 0:
            var bytes = [UInt8](repeating: 0, count: width)
            bytes.withUnsafeMutableBytes { device.read(offset: offset, into: $0) }
        case 3:
            let address = input.value(width: 4) % (ramSize - 8)
            try? memory.writeValue(input.value(width: 8), at: address)
        default:
            let bytes = (0..<width).map { _ in input.byte() }
            bytes.withUnsafeBytes { device.write(offset: offset, from: $0) }
        }
        return true
    }

    static func write(_ device: BusDevice, _ offset: UInt64, _ value: UInt64, width: Int = 4) {
        let bytes = (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        bytes.withUnsafeBytes { device.write(offset: offset, from: $0) }
    }

    static func read(_ device: BusDevice, _ offset: UInt64, width: Int = 4) -> UInt64 {
        var bytes = [UInt8](repeating: 0, count: width)
        bytes.withUnsafeMutableBytes { device.read(offset: offset, into: $0) }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    static func e1000(_ bytes: [UInt8]) -> FuzzProperty {
        var input = FuzzInput(bytes)
        let modes: [NetworkPeer.Mode] = [.sink, .source, .echo]
        let peer = NetworkPeer(mode: modes[Int(input.byte()) % modes.count])
        guard let memory = guestMemory(&input) else { return "cannot allocate guest memory" }
        let nic = E1000(memory: memory, mmio: IOBus(), peer: peer)
        _ = nic.configuration.write(offset: 4, count: 2, value: 0x6)  // memory space + bus mastering
        for _ in 0..<maximumSteps where step(&input, nic, span: UInt64(E1000.barSize), memory: memory) {}
        if let reason = nic.brokenReason, reason.isEmpty { return "the NIC broke without a reason" }
        write(nic, 0x0, 1 << 26)  // CTRL.RST
        if let reason = nic.brokenReason { return "a reset did not heal the NIC: \(reason)" }
        // Whatever the program did to EECD, MDIC and the PHY, the driver's first reads after a
        // reset work: the MAC's first EEPROM word through EERD, the PHY's identifier through MDIC.
        write(nic, 0x14, 0x0001)  // EERD: start, word 0
        let word = read(nic, 0x14)
        guard word & 0x10 != 0, word >> 16 == UInt64(nic.mac[0]) | UInt64(nic.mac[1]) << 8 else {
            return "EERD after a reset read 0x\(String(word, radix: 16))"
        }
        write(nic, 0x20, 2 << 26 | 1 << 21 | 2 << 16)  // MDIC: read PHY 1, register 2
        let phy = read(nic, 0x20)
        return phy & (1 << 28) != 0 && phy & 0xFFFF == 0x0141 ? nil : "MDIC after a reset read 0x\(String(phy, radix: 16))"
    }

    static func ide(_ bytes: [UInt8]) -> FuzzProperty {
        var input = FuzzInput(bytes)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-fuzz-\(getpid()).img").path
        unlink(path)
        defer { unlink(path) }
        guard let disk = try? DiskImage.create(path: path, size: 1 << 20), let memory = try? GuestMemory(size: 4096) else {
            return "cannot create the fuzz disk"
        }
        let ide = IDEDisk(disk: disk)
        for _ in 0..<maximumSteps where !input.isExhausted {
            let control = input.byte() % 8 == 0
            guard step(&input, control ? ide.controlBlock : ide.commandBlock, span: control ? 1 : 8, memory: memory) else {
                break
            }
        }
        // SRST, then IDENTIFY must work whatever state the program left.
        write(ide.controlBlock, 0, 0x04, width: 1)
        write(ide.controlBlock, 0, 0x00, width: 1)
        write(ide.commandBlock, 6, 0xA0, width: 1)
        write(ide.commandBlock, 7, 0xEC, width: 1)
        guard read(ide.commandBlock, 7, width: 1) & 0x09 == 0x08 else { return "IDENTIFY after a reset did not offer data" }
        let words = (0..<256).map { _ in read(ide.commandBlock, 0, width: 2) }
        return words[100] | words[101] << 16 == 2048 ? nil : "IDENTIFY after a reset reported the wrong size"
    }

    static func virtio(_ bytes: [UInt8]) -> FuzzProperty {
        var input = FuzzInput(bytes)
        let kind = input.byte() % 3
        guard let memory = guestMemory(&input) else { return "cannot allocate guest memory" }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("hvbench-fuzz-\(getpid()).img").path
        unlink(path)
        defer { unlink(path) }
        let model: VirtioDeviceModel
        var balloon: VirtioBalloon?
        switch kind {
        case 0:
            guard let disk = try? DiskImage.create(path: path, size: 1 << 20) else { return "cannot create the fuzz disk" }
            model = VirtioBlock(disk: disk)
        case 1:
            model = VirtioNet(peer: NetworkPeer(mode: .echo))
        default:
            let made = VirtioBalloon(memory: memory)
            (balloon, model) = (made, made)
        }
        let transport = VirtioPCITransport(model: model, memory: memory, mmio: IOBus())
        _ = transport.configuration.write(offset: 4, count: 2, value: 0x6)
        for _ in 0..<maximumSteps where step(&input, transport, span: 0x4000, memory: memory) {}
        if transport.brokenReason != nil && transport.status & 0x40 == 0 {
            return "a broken device did not set DEVICE_NEEDS_RESET"
        }
        if let balloon, balloon.ballooned < 0 || UInt64(balloon.ballooned) > memory.size / VirtioBalloon.pageSize {
            return "the balloon counts \(balloon.ballooned) pages in a guest of \(memory.size / VirtioBalloon.pageSize)"
        }
        write(transport, 0x14, 0, width: 1)  // device_status = 0: reset
        if let balloon, balloon.ballooned != 0 { return "a reset left \(balloon.ballooned) pages in the balloon" }
        return transport.brokenReason == nil && transport.status == 0 ? nil : "a reset did not heal the virtio device"
    }

    static func pci(_ bytes: [UInt8]) -> FuzzProperty {
        var input = FuzzInput(bytes)
        guard let memory = guestMemory(&input) else { return "cannot allocate guest memory" }
        let mmio = IOBus()
        let bus = PCIBus(mmio: mmio)
        let nicSlot = bus.plug(E1000(memory: memory, mmio: mmio, peer: NetworkPeer(mode: .sink)))
        let virtioSlot = bus.plug(
            VirtioPCITransport(model: VirtioNet(peer: NetworkPeer(mode: .sink)), memory: memory, mmio: mmio))
        for _ in 0..<maximumSteps where !input.isExhausted {
            if input.byte() % 8 == 0 {
                var bytes = [UInt8](repeating: 0, count: 4)
                bytes.withUnsafeMutableBytes { _ = mmio.read(input.value(width: 4), into: $0) }
            } else if !step(&input, bus, span: 8, memory: memory) {
                break
            }
        }
        func identity(_ slot: Int) -> UInt64 {
            write(bus, 0, 0x8000_0000 | UInt64(slot) << 11)
            return read(bus, 4)
        }
        guard identity(0) == 0x1237_8086, identity(nicSlot) == 0x100E_8086, identity(virtioSlot) & 0xFFFF == 0x1AF4 else {
            return "configuration writes changed a device's identity"
        }
        return nil
    }
}
