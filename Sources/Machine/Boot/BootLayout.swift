/// Where the loaders put boot data in low guest memory (below the 1 MiB kernel load address).
public enum BootLayout {
    public static let gdtAddress: UInt64 = 0x500
    public static let startInfoAddress: UInt64 = 0x6000
    /// PVH's module list (the initrd), after the start info.
    public static let moduleListAddress: UInt64 = 0x6800
    public static let memoryMapAddress: UInt64 = 0x7000
    public static let multibootInfoAddress: UInt64 = 0x9000
    public static let multibootMemoryMapAddress: UInt64 = 0x9100
    /// The Linux boot protocol's struct boot_params.
    public static let zeroPageAddress: UInt64 = 0x10000
    public static let commandLineAddress: UInt64 = 0x20000
    public static let commandLineLimit = 4096
    /// Top of conventional memory; 0x9FC00..1 MiB is reserved (EBDA, VGA, BIOS on a PC).
    public static let lowMemoryEnd: UInt64 = 0x9FC00
    public static let highMemoryStart: UInt64 = 0x100000

    public enum RegionType: UInt32 { case ram = 1, reserved = 2 }

    /// The E820-style map both boot protocols report.
    public static func memoryMap(ramSize: UInt64) -> [(start: UInt64, length: UInt64, type: RegionType)] {
        [
            (0, lowMemoryEnd, .ram),
            (lowMemoryEnd, highMemoryStart - lowMemoryEnd, .reserved),
            (highMemoryStart, ramSize - highMemoryStart, .ram),
        ]
    }

    /// Flat 32-bit code (0x10) and data (0x18) segments and a TSS descriptor (0x20).
    static func writeBootGDT(into memory: GuestMemory) throws -> (base: UInt32, limit: UInt16) {
        let entries: [UInt64] = [
            0, 0,
            0x00CF_9B00_0000_FFFF,  // 0x10: code, 32-bit, 4 GiB
            0x00CF_9300_0000_FFFF,  // 0x18: data, 4 GiB
            0x0000_8B00_0000_0067,  // 0x20: 32-bit TSS (busy), base 0, limit 0x67
        ]
        for (index, entry) in entries.enumerated() {
            try memory.writeValue(entry, at: gdtAddress + UInt64(index * 8))
        }
        return (UInt32(gdtAddress), UInt16(entries.count * 8 - 1))
    }

    /// Where an initrd of `size` bytes goes: page aligned as high as it may end (the top of
    /// RAM, below 4 GiB and below `ceiling`, the kernel's own limit), above `lowest` (the end of
    /// the loaded kernel).
    static func initrdAddress(size: UInt64, lowest: UInt64, ramSize: UInt64, ceiling: UInt64 = 1 << 32) throws -> UInt64 {
        let top = min(ramSize, ceiling, 1 << 32)
        let floor = (lowest + 0xFFF) & ~0xFFF
        guard size <= top, (top - size) & ~0xFFF >= floor else {
            throw BootError.imageDoesNotFit(
                "the initrd of \(size) bytes does not fit between the kernel's end at \(floor >> 20) MiB and "
                    + "\(top >> 20) MiB (guest RAM \(ramSize >> 20) MiB); give the VM more memory or a smaller initrd")
        }
        return (top - size) & ~0xFFF
    }

    static func writeCommandLine(_ commandLine: String, into memory: GuestMemory) throws {
        let bytes = Array(commandLine.utf8)
        guard bytes.count < commandLineLimit else { throw BootError.commandLineTooLong(bytes.count, limit: commandLineLimit - 1) }
        try memory.write(bytes + [0], at: commandLineAddress)
    }
}

public enum BootError: Error, Equatable, CustomStringConvertible {
    case commandLineTooLong(Int, limit: Int)
    case notBootable(String)
    case imageDoesNotFit(String)

    public var description: String {
        switch self {
        case .commandLineTooLong(let length, let limit): return "kernel command line is \(length) bytes; the limit is \(limit)"
        case .notBootable(let why): return "not a bootable kernel: \(why)"
        case .imageDoesNotFit(let why): return "kernel does not fit in guest memory: \(why)"
        }
    }
}
