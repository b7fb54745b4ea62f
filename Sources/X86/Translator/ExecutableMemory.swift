import Glibc

/// The translator's code cache: one mapping whose pages are either writable or executable,
/// never both. Code is appended while its pages are read-write and made read-execute before
/// anything runs from them; a full cache is emptied as a whole (its blocks are forgotten first).
final class ExecutableMemory {
    let capacity: Int
    private let base: UnsafeMutableRawPointer
    private(set) var used = 0
    private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// nil when the host refuses the mapping (the emulator then interprets).
    init?(capacity: Int) {
        let rounded = (capacity + Self.pageSize - 1) / Self.pageSize * Self.pageSize
        guard let mapping = mmap(nil, rounded, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
            mapping != MAP_FAILED
        else { return nil }
        base = mapping
        self.capacity = rounded
    }

    deinit { munmap(base, capacity) }

    /// Copies `code` in and returns where it now runs from, read-execute; nil when the cache is
    /// full (the caller empties it with `reset()` and translates again) or the host refuses.
    func place(_ code: [UInt8]) -> UnsafeRawPointer? {
        let start = (used + 15) & ~15
        guard start + code.count <= capacity, !code.isEmpty else { return nil }
        let written = write(at: start, count: code.count) { destination in
            code.withUnsafeBytes { destination.copyMemory(from: $0.baseAddress!, byteCount: code.count) }
        }
        guard written else { return nil }
        used = start + code.count
        return UnsafeRawPointer(base + start)
    }

    /// Points the rel32 field at `field` (inside placed code) to `target`.
    func link(field: UnsafeRawPointer, to target: UnsafeRawPointer) -> Bool {
        let offset = field - UnsafeRawPointer(base)
        guard offset >= 0, offset + 4 <= used else { return false }
        let relative = Int32(truncatingIfNeeded: target - (field + 4))
        return write(at: offset, count: 4) { $0.storeBytes(of: relative.littleEndian, as: Int32.self) }
    }

    /// Makes the pages holding [offset, offset + count) read-write (not executable), lets `body`
    /// write there, and makes them read-execute again.
    private func write(at offset: Int, count: Int, _ body: (UnsafeMutableRawPointer) -> Void) -> Bool {
        let firstPage = offset / Self.pageSize * Self.pageSize
        let lastPage = (offset + count + Self.pageSize - 1) / Self.pageSize * Self.pageSize
        guard mprotect(base + firstPage, lastPage - firstPage, PROT_READ | PROT_WRITE) == 0 else { return false }
        body(base + offset)
        return mprotect(base + firstPage, lastPage - firstPage, PROT_READ | PROT_EXEC) == 0
    }

    /// Empties the cache: every page back to inaccessible, nothing placed.
    func reset() {
        mprotect(base, capacity, PROT_NONE)
        used = 0
    }

    /// Whether any page is writable and executable at once (never, by construction; tests ask).
    var hasWritableExecutablePage: Bool {
        guard let maps = fopen("/proc/self/maps", "r") else { return false }
        defer { fclose(maps) }
        let low = UInt(bitPattern: base)
        let high = low + UInt(capacity)
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), maps) != nil {
            let text = String(cString: line)
            let fields = text.split(separator: " ")
            guard fields.count >= 2 else { continue }
            let bounds = fields[0].split(separator: "-").compactMap { UInt($0, radix: 16) }
            guard bounds.count == 2, bounds[0] < high, bounds[1] > low else { continue }
            if fields[1].hasPrefix("rwx") { return true }
        }
        return false
    }
}
