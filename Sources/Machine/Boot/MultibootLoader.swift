/// Boots a Multiboot (v1) kernel: the header in its first 8 KiB says where it loads (or its ELF
/// program headers do); it starts in 32-bit protected mode with %eax = 0x2BADB002 and %ebx =
/// the multiboot information structure (memory sizes, memory map, command line).
public enum MultibootLoader {
    public static let headerMagic: UInt32 = 0x1BAD_B002
    public static let bootloaderMagic: UInt32 = 0x2BAD_B002

    public struct Header: Equatable {
        public let offset: Int
        public let flags: UInt32
        public let headerAddress, loadAddress, loadEndAddress, bssEndAddress, entryAddress: UInt32
        public var hasAddressFields: Bool { flags & (1 << 16) != 0 }
    }

    /// The multiboot header, if one sits 4-byte aligned in the first 8192 bytes with a valid checksum.
    public static func findHeader(in bytes: [UInt8]) -> Header? {
        let reader = ByteReader(bytes)
        var offset = 0
        while offset + 12 <= min(bytes.count, 8192) {
            if let magic = try? reader.u32(offset), magic == headerMagic,
                let flags = try? reader.u32(offset + 4), let checksum = try? reader.u32(offset + 8),
                magic &+ flags &+ checksum == 0
            {
                func field(_ n: Int) -> UInt32 { (try? reader.u32(offset + 12 + 4 * n)) ?? 0 }
                return Header(
                    offset: offset, flags: flags, headerAddress: field(0), loadAddress: field(1),
                    loadEndAddress: field(2), bssEndAddress: field(3), entryAddress: field(4))
            }
            offset += 4
        }
        return nil
    }

    public static func load(_ bytes: [UInt8], into memory: GuestMemory, commandLine: String) throws -> ProtectedModeEntry {
        guard let header = findHeader(in: bytes) else { throw BootError.notBootable("no multiboot header in the first 8 KiB") }
        // Bits 0-15 the loader must honour: 0 (page-align modules: no modules) and 1 (memory
        // info: always given) are fine; 2 (video mode) is ignored as the spec allows for text.
        let entry: UInt32
        do {
            if header.hasAddressFields {
                entry = try loadWithAddressFields(header, bytes, memory)
            } else {
                let image = try ELFImage(bytes)
                try image.load(from: bytes, into: memory)
                entry = UInt32(truncatingIfNeeded: image.entry)
            }
        } catch let error as GuestMemoryError {
            throw BootError.imageDoesNotFit("\(error)")
        }
        try BootLayout.writeCommandLine(commandLine, into: memory)

        let map = BootLayout.memoryMap(ramSize: memory.size)
        for (index, region) in map.enumerated() {
            let address = BootLayout.multibootMemoryMapAddress + UInt64(index * 24)
            try memory.writeValue(UInt32(20), at: address)  // size of the rest of the entry
            try memory.writeValue(region.start, at: address + 4)
            try memory.writeValue(region.length, at: address + 12)
            try memory.writeValue(region.type.rawValue, at: address + 20)
        }
        let info = BootLayout.multibootInfoAddress
        try memory.bytes(at: info, count: 88).initializeMemory(as: UInt8.self, repeating: 0)
        let flags: UInt32 = 1 << 0 | 1 << 2 | 1 << 6  // memory sizes, command line, memory map
        try memory.writeValue(flags, at: info)
        try memory.writeValue(UInt32(BootLayout.lowMemoryEnd / 1024), at: info + 4)
        try memory.writeValue(UInt32((memory.size - BootLayout.highMemoryStart) / 1024), at: info + 8)
        try memory.writeValue(UInt32(BootLayout.commandLineAddress), at: info + 16)
        try memory.writeValue(UInt32(map.count * 24), at: info + 44)
        try memory.writeValue(UInt32(BootLayout.multibootMemoryMapAddress), at: info + 48)

        let gdt = try BootLayout.writeBootGDT(into: memory)
        return ProtectedModeEntry(
            entryPoint: entry, eax: bootloaderMagic, ebx: UInt32(info), gdtBase: gdt.base, gdtLimit: gdt.limit)
    }

    private static func loadWithAddressFields(_ header: Header, _ bytes: [UInt8], _ memory: GuestMemory) throws -> UInt32 {
        guard header.headerAddress >= header.loadAddress else {
            throw BootError.notBootable("multiboot header_addr is below load_addr")
        }
        let fileStart = header.offset - Int(header.headerAddress - header.loadAddress)
        guard fileStart >= 0 else { throw BootError.notBootable("multiboot header_addr precedes the file") }
        let loadLength =
            header.loadEndAddress == 0
            ? bytes.count - fileStart : Int(header.loadEndAddress) - Int(header.loadAddress)
        guard loadLength >= 0, fileStart + loadLength <= bytes.count else {
            throw BootError.notBootable("multiboot load range extends past the end of the file")
        }
        try memory.write(bytes[fileStart..<fileStart + loadLength], at: UInt64(header.loadAddress))
        if header.bssEndAddress > header.loadAddress + UInt32(loadLength) {
            let bssStart = UInt64(header.loadAddress) + UInt64(loadLength)
            try memory.bytes(at: bssStart, count: Int(UInt64(header.bssEndAddress) - bssStart))
                .initializeMemory(as: UInt8.self, repeating: 0)
        }
        return header.entryAddress
    }
}
