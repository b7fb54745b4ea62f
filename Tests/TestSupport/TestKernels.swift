import Machine

/// Hand-assembled kernels for loader and VM tests.
public enum TestKernels {
    /// A minimal ELF64 with one PT_LOAD segment at `loadAddress` and, optionally, a PVH note.
    public static func elf64(payload: [UInt8], loadAddress: UInt64, memorySize: UInt64? = nil, pvhEntry: UInt32?) -> [UInt8] {
        var note: [UInt8] = []
        if let pvhEntry {
            note += le32(4) + le32(4) + le32(18) + Array("Xen\0".utf8) + le32(pvhEntry)
        }
        let headerSize = 64
        let programHeaderSize = 56
        let programHeaderCount = note.isEmpty ? 1 : 2
        let noteOffset = headerSize + programHeaderSize * programHeaderCount
        let payloadOffset = noteOffset + note.count
        var bytes: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0] + Array(repeating: 0, count: 8)
        bytes += le16(2) + le16(62) + le32(1)  // type EXEC, machine x86-64, version
        bytes += le64(loadAddress) + le64(UInt64(headerSize)) + le64(0)  // entry, phoff, shoff
        bytes += le32(0) + le16(UInt16(headerSize)) + le16(UInt16(programHeaderSize)) + le16(UInt16(programHeaderCount))
        bytes += le16(64) + le16(0) + le16(0)
        // PT_LOAD
        bytes += le32(1) + le32(7) + le64(UInt64(payloadOffset)) + le64(loadAddress) + le64(loadAddress)
        bytes += le64(UInt64(payload.count)) + le64(memorySize ?? UInt64(payload.count)) + le64(0x1000)
        if !note.isEmpty {
            bytes += le32(4) + le32(4) + le64(UInt64(noteOffset)) + le64(0) + le64(0)
            bytes += le64(UInt64(note.count)) + le64(UInt64(note.count)) + le64(4)
        }
        return bytes + note + payload
    }

    /// A Multiboot v1 kernel using the header's address fields, loaded at 1 MiB, whose 32-bit
    /// code starts right after the 32-byte header.
    public static func multiboot(code: [UInt8], bssEnd: UInt32 = 0) -> [UInt8] {
        let load: UInt32 = 0x100000
        let flags: UInt32 = 1 << 16
        let magic: UInt32 = 0x1BAD_B002
        var header = le32(magic) + le32(flags) + le32(0 &- (magic &+ flags))
        header += le32(load) + le32(load) + le32(0) + le32(bssEnd) + le32(load + 32)
        return header + code
    }

    /// A bzImage (Linux boot protocol `version`) whose protected-mode part is `code`, after one
    /// sector of real-mode setup that only holds the setup header.
    public static func bzImage(
        code: [UInt8], version: UInt16 = 0x020F, loadFlags: UInt8 = 1, initSize: UInt32 = 0,
        initrdAddressMax: UInt32 = 0x37FF_FFFF, commandLineSize: UInt32 = 2047
    ) -> [UInt8] {
        var setup = [UInt8](repeating: 0, count: 2 * 512)
        func put(_ bytes: [UInt8], at offset: Int) { setup.replaceSubrange(offset..<offset + bytes.count, with: bytes) }
        put([1], at: 0x1F1)  // setup_sects
        put([0x55, 0xAA], at: 0x1FE)  // boot_flag
        put([0xEB, 0x66], at: 0x200)  // jump over the header: it ends at 0x268
        put(Array("HdrS".utf8) + le16(version), at: 0x202)
        put([loadFlags], at: 0x211)
        put(le32(0x100000), at: 0x214)  // code32_start
        put(le32(initrdAddressMax), at: 0x22C)
        put(le32(commandLineSize), at: 0x238)
        put(le32(initSize), at: 0x260)
        return setup + code
    }

    /// 32-bit code for the Linux boot protocol: prints on COM1 what %esi's boot_params say (the
    /// E820 entry count as a digit, the command line's first byte, the initrd's first byte, a
    /// newline), then writes 5 to port 0xF4.
    public static let bootParamsReport: [UInt8] = [
        0x66, 0xBA, 0xF8, 0x03,  // mov dx, 0x3f8
        0x8A, 0x86, 0xE8, 0x01, 0x00, 0x00,  // mov al, [esi + 0x1e8]: e820_entries
        0x04, 0x30, 0xEE,  // add al, '0'; out dx, al
        0x8B, 0x9E, 0x28, 0x02, 0x00, 0x00,  // mov ebx, [esi + 0x228]: cmd_line_ptr
        0x8A, 0x03, 0xEE,  // mov al, [ebx]; out dx, al
        0x8B, 0x9E, 0x18, 0x02, 0x00, 0x00,  // mov ebx, [esi + 0x218]: ramdisk_image
        0x8A, 0x03, 0xEE,  // mov al, [ebx]; out dx, al
        0xB0, 0x0A, 0xEE,  // newline
        0xB0, 0x05, 0xE6, 0xF4,  // exit 5
        0xEB, 0xFE,
    ]

    /// 32-bit code: print "hi" on COM1, then write `status` to port 0xF4, then hlt.
    public static func helloAndExit(status: UInt8) -> [UInt8] {
        [0x66, 0xBA, 0xF8, 0x03, 0xB0, 0x68, 0xEE, 0xB0, 0x69, 0xEE, 0xB0, status, 0xE6, 0xF4, 0xF4]
    }

    /// 32-bit code that spins forever: jmp $.
    public static let spinForever: [UInt8] = [0xEB, 0xFE]

    public static func le16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    public static func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    public static func le64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
}
