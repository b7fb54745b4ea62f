/// The parts of an ELF executable a boot loader needs: loadable segments, notes, entry point.
/// Both ELF32 (typical multiboot kernels) and ELF64 (PVH kernels) are accepted.
public struct ELFImage: Sendable {
    public struct Segment: Equatable, Sendable {
        public let physicalAddress: UInt64
        public let fileOffset: UInt64
        public let fileSize: UInt64
        public let memorySize: UInt64
    }

    public struct Note: Equatable, Sendable {
        public let name: String
        public let type: UInt32
        public let descriptor: [UInt8]
    }

    public let is64Bit: Bool
    public let entry: UInt64
    public let segments: [Segment]
    public let notes: [Note]

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case notELF
        case unsupported(String)
        case truncated(String)

        public var description: String {
            switch self {
            case .notELF: return "not an ELF file (bad magic)"
            case .unsupported(let what): return "unsupported ELF: \(what)"
            case .truncated(let what): return "truncated ELF: \(what) extends past the end of the file"
            }
        }
    }

    public static func isELF(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 4 && bytes[0] == 0x7F && bytes[1] == 0x45 && bytes[2] == 0x4C && bytes[3] == 0x46
    }

    public init(_ bytes: [UInt8]) throws {
        guard Self.isELF(bytes), bytes.count >= 52 else { throw ParseError.notELF }
        let reader = ByteReader(bytes)
        switch bytes[4] {
        case 1: is64Bit = false
        case 2: is64Bit = true
        default: throw ParseError.unsupported("class \(bytes[4])")
        }
        guard bytes[5] == 1 else { throw ParseError.unsupported("big-endian") }
        let machine = try reader.u16(18)
        guard machine == 3 || machine == 62 else { throw ParseError.unsupported("machine \(machine) (want x86 or x86-64)") }

        let programHeaderOffset: UInt64
        let programHeaderSize: Int
        let programHeaderCount: Int
        if is64Bit {
            guard bytes.count >= 64 else { throw ParseError.truncated("ELF header") }
            entry = try reader.u64(24)
            programHeaderOffset = try reader.u64(32)
            programHeaderSize = Int(try reader.u16(54))
            programHeaderCount = Int(try reader.u16(56))
        } else {
            entry = UInt64(try reader.u32(24))
            programHeaderOffset = UInt64(try reader.u32(28))
            programHeaderSize = Int(try reader.u16(42))
            programHeaderCount = Int(try reader.u16(44))
        }
        guard programHeaderSize >= (is64Bit ? 56 : 32) else {
            throw ParseError.unsupported("program header size \(programHeaderSize)")
        }

        var segments: [Segment] = []
        var notes: [Note] = []
        for index in 0..<programHeaderCount {
            let (header, overflow) = programHeaderOffset.addingReportingOverflow(UInt64(index * programHeaderSize))
            guard !overflow, header + UInt64(programHeaderSize) <= UInt64(bytes.count) else {
                throw ParseError.truncated("program header \(index)")
            }
            let h = Int(header)
            let type = try reader.u32(h)
            let offset, physical, fileSize, memorySize: UInt64
            if is64Bit {
                offset = try reader.u64(h + 8)
                physical = try reader.u64(h + 24)
                fileSize = try reader.u64(h + 32)
                memorySize = try reader.u64(h + 40)
            } else {
                offset = UInt64(try reader.u32(h + 4))
                physical = UInt64(try reader.u32(h + 12))
                fileSize = UInt64(try reader.u32(h + 16))
                memorySize = UInt64(try reader.u32(h + 20))
            }
            let (end, endOverflow) = offset.addingReportingOverflow(fileSize)
            guard !endOverflow, end <= UInt64(bytes.count) else { throw ParseError.truncated("segment \(index)") }
            switch type {
            case 1:  // PT_LOAD
                guard memorySize >= fileSize else { throw ParseError.unsupported("segment \(index) has memsz < filesz") }
                segments.append(
                    Segment(physicalAddress: physical, fileOffset: offset, fileSize: fileSize, memorySize: memorySize))
            case 4:  // PT_NOTE
                notes += try Self.parseNotes(reader, from: Int(offset), to: Int(end))
            default: break
            }
        }
        self.segments = segments
        self.notes = notes
    }

    private static func parseNotes(_ reader: ByteReader, from start: Int, to end: Int) throws -> [Note] {
        var notes: [Note] = []
        var cursor = start
        func aligned(_ n: Int) -> Int { (n + 3) & ~3 }
        while cursor + 12 <= end {
            let nameSize = Int(try reader.u32(cursor))
            let descriptorSize = Int(try reader.u32(cursor + 4))
            let type = try reader.u32(cursor + 8)
            let nameStart = cursor + 12
            let descriptorStart = nameStart + aligned(nameSize)
            let next = descriptorStart + aligned(descriptorSize)
            guard nameSize < 4096, descriptorSize < 65536, next <= end else { throw ParseError.truncated("note") }
            let nameBytes = reader.bytes[nameStart..<nameStart + nameSize].prefix { $0 != 0 }
            notes.append(
                Note(
                    name: String(decoding: nameBytes, as: UTF8.self), type: type,
                    descriptor: Array(reader.bytes[descriptorStart..<descriptorStart + descriptorSize])))
            cursor = next
        }
        return notes
    }

    /// Copies every loadable segment to its physical address and zeroes the rest of memsz.
    /// - Parameter ramIsZero: the memory was just mapped and nothing wrote to it, so the
    ///   segments' zero-filled tails (.bss) already read as zero and are not written: writing
    ///   them allocated a host page for every page of .bss, most of which a short boot never
    ///   touches (about a tenth of the emulator's start-up).
    public func load(from bytes: [UInt8], into memory: GuestMemory, ramIsZero: Bool = false) throws {
        for segment in segments {
            let destination = try memory.bytes(at: segment.physicalAddress, count: Int(segment.memorySize))
            let start = Int(segment.fileOffset)
            destination.copyBytes(from: bytes[start..<start + Int(segment.fileSize)])
            if segment.memorySize > segment.fileSize, !ramIsZero {
                let tail = UnsafeMutableRawBufferPointer(rebasing: destination[Int(segment.fileSize)...])
                tail.initializeMemory(as: UInt8.self, repeating: 0)
            }
        }
    }
}

/// Bounds-checked little-endian reads from a byte array.
struct ByteReader {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func value<T: FixedWidthInteger>(_ offset: Int, _: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset + size <= bytes.count else { throw ELFImage.ParseError.truncated("field at \(offset)") }
        var result: T = 0
        for index in 0..<size { result |= T(bytes[offset + index]) << (8 * index) }
        return result
    }
    func u16(_ offset: Int) throws -> UInt16 { try value(offset, UInt16.self) }
    func u32(_ offset: Int) throws -> UInt32 { try value(offset, UInt32.self) }
    func u64(_ offset: Int) throws -> UInt64 { try value(offset, UInt64.self) }
}
