#if canImport(Glibc)
    import Glibc
#endif

public struct DiskError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A raw disk image file. Requests copy straight between the file and guest RAM; with
/// `direct` (O_DIRECT) they go through an aligned bounce buffer, as O_DIRECT requires.
public final class DiskImage {
    public static let sectorSize = 512
    public let path: String
    public let sectors: UInt64
    private let descriptor: Int32
    private let direct: Bool
    private var bounce: UnsafeMutableRawPointer?
    private var bounceSize = 0

    /// Opens `path`, creating a sparse file of `size` bytes when it does not exist.
    public init(path: String, createSize size: UInt64, direct: Bool = false) throws {
        var flags = O_RDWR | O_CLOEXEC | O_CREAT
        if direct { flags |= 0o40000 }  // O_DIRECT on x86-64 Linux (the macro is not imported)
        let fd = open(path, flags, 0o644)
        guard fd >= 0 else { throw DiskError("cannot open disk image \(path): \(String(cString: strerror(errno)))") }
        var info = stat()
        fstat(fd, &info)
        if info.st_size == 0 {
            guard ftruncate(fd, off_t(size)) == 0 else {
                close(fd)
                throw DiskError("cannot size disk image \(path): \(String(cString: strerror(errno)))")
            }
            info.st_size = off_t(size)
        }
        self.path = path
        self.descriptor = fd
        self.direct = direct
        self.sectors = UInt64(info.st_size) / UInt64(Self.sectorSize)
    }

    deinit {
        close(descriptor)
        free(bounce)
    }

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
