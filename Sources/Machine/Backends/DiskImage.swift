#if canImport(Glibc)
    import Glibc
#endif

public struct DiskError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A raw disk image file. Requests copy straight between the file and guest RAM; with
/// `direct` (O_DIRECT) they go through an aligned bounce buffer, as O_DIRECT requires.
///
/// Opening never creates a file and creating never opens an existing one, so a mistyped path is
/// an error rather than a new empty disk, and a user's image is never truncated or resized.
public final class DiskImage {
    public enum Access: Sendable { case readOnly, readWrite }

    public static let sectorSize = 512
    public let path: String
    public let sectors: UInt64
    /// A read-only image fails every write (the device reports an I/O error to the guest).
    public let isReadOnly: Bool
    private let file: HostDescriptor
    private var descriptor: Int32 { file.rawValue }
    private let direct: Bool
    private var bounce: UnsafeMutableRawPointer?
    private var bounceSize = 0

    private static let oDirect: Int32 = 0o40000  // O_DIRECT on x86-64 Linux (the macro is not imported)

    /// Opens an existing image.
    public convenience init(path: String, access: Access = .readWrite, direct: Bool = false) throws {
        var flags = (access == .readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC
        if direct { flags |= Self.oDirect }
        guard let file = HostDescriptor(taking: open(path, flags)) else {
            throw DiskError("cannot open disk image \(path): \(String(cString: strerror(errno)))")
        }
        try self.init(file: file, path: path, readOnly: access == .readOnly, direct: direct)
    }

    /// Creates a new sparse image of `size` bytes; an existing file at `path` is an error.
    public static func create(path: String, size: UInt64, direct: Bool = false) throws -> DiskImage {
        var flags = O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL
        if direct { flags |= oDirect }
        guard let file = HostDescriptor(taking: open(path, flags, 0o644)) else {
            throw DiskError("cannot create disk image \(path): \(String(cString: strerror(errno)))")
        }
        guard size <= UInt64(Int64.max), ftruncate(file.rawValue, off_t(size)) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(path)
            throw DiskError("cannot size disk image \(path): \(reason)")
        }
        return try DiskImage(file: file, path: path, readOnly: false, direct: direct)
    }

    private init(file: HostDescriptor, path: String, readOnly: Bool, direct: Bool) throws {
        let fd = file.rawValue
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG || (info.st_mode & S_IFMT) == S_IFBLK else {
            throw DiskError("disk image \(path) is not a regular file or block device")
        }
        var size = UInt64(max(0, info.st_size))
        if (info.st_mode & S_IFMT) == S_IFBLK { size = UInt64(max(0, lseek(fd, 0, SEEK_END))) }
        self.path = path
        self.file = file
        self.direct = direct
        self.isReadOnly = readOnly
        self.sectors = size / UInt64(Self.sectorSize)
    }

    deinit { free(bounce) }

    private func bounceBuffer(_ length: Int) -> UnsafeMutableRawPointer {
        if length > bounceSize {
            free(bounce)
            var pointer: UnsafeMutableRawPointer?
            posix_memalign(&pointer, 4096, (length + 4095) & ~4095)
            bounce = pointer
            bounceSize = (length + 4095) & ~4095
        }
        return bounce!
    }

    /// Checks that `count` sectors at `sector` exist.
    public func contains(sector: UInt64, count: Int) -> Bool {
        let (end, overflow) = sector.addingReportingOverflow(UInt64(count))
        return !overflow && end <= sectors
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at byteOffset: UInt64) throws {
        let target = direct ? UnsafeMutableRawBufferPointer(start: bounceBuffer(buffer.count), count: buffer.count) : buffer
        var done = 0
        while done < buffer.count {
            let n = pread(descriptor, target.baseAddress! + done, buffer.count - done, off_t(byteOffset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                if n == 0 {  // past the end of a short file: zeros
                    (target.baseAddress! + done).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - done)
                    break
                }
                throw DiskError("read of \(path) at \(byteOffset): \(String(cString: strerror(errno)))")
            }
            done += n
        }
        if direct { buffer.baseAddress!.copyMemory(from: target.baseAddress!, byteCount: buffer.count) }
    }

    public func write(from buffer: UnsafeRawBufferPointer, at byteOffset: UInt64) throws {
        guard !isReadOnly else { throw DiskError("write to read-only disk image \(path) at \(byteOffset)") }
        var source = buffer
        if direct {
            let bounce = bounceBuffer(buffer.count)
            bounce.copyMemory(from: buffer.baseAddress!, byteCount: buffer.count)
            source = UnsafeRawBufferPointer(start: bounce, count: buffer.count)
        }
        var done = 0
        while done < buffer.count {
            let n = pwrite(descriptor, source.baseAddress! + done, buffer.count - done, off_t(byteOffset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw DiskError("write of \(path) at \(byteOffset): \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    public func flush() throws {
        guard fsync(descriptor) == 0 else { throw DiskError("fsync of \(path): \(String(cString: strerror(errno)))") }
    }
}
