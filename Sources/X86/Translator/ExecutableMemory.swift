import CHostTimer
import Glibc

/// The translator's code cache: one shared-memory file mapped twice, read-write where code is
/// written and read-execute where it runs, so no page is ever writable and executable at once
/// and placing a block changes no page protections (an mprotect pair per block cost two system
/// calls and, with several threads, a TLB shootdown on every host CPU: about a tenth of a
/// boot's host time). A full cache is emptied as a whole (its blocks are forgotten first).
final class ExecutableMemory {
    let capacity: Int
    /// Where code is written.
    private let writable: UnsafeMutableRawPointer
    /// Where the same bytes run.
    private let base: UnsafeMutableRawPointer
    private(set) var used = 0
    private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// nil when the host refuses the file or either mapping (the emulator then interprets).
    init?(capacity: Int) {
        let rounded = (capacity + Self.pageSize - 1) / Self.pageSize * Self.pageSize
        let file = chosttimer_code_memory_file()
        guard file >= 0 else { return nil }
        defer { close(file) }  // the mappings keep the file
        guard ftruncate(file, off_t(rounded)) == 0,
            let writable = mmap(nil, rounded, PROT_READ | PROT_WRITE, MAP_SHARED, file, 0), writable != MAP_FAILED
        else { return nil }
        guard let executable = mmap(nil, rounded, PROT_READ | PROT_EXEC, MAP_SHARED, file, 0), executable != MAP_FAILED
        else {
            munmap(writable, rounded)
            return nil
        }
        self.writable = writable
        base = executable
        self.capacity = rounded
    }

    deinit {
        munmap(base, capacity)
        munmap(writable, capacity)
    }

    /// Copies `code` in and returns where it runs from; nil when the cache is full (the caller
    /// empties it with `reset()` and translates again).
    func place(_ code: [UInt8]) -> UnsafeRawPointer? {
        let start = (used + 15) & ~15
        guard start + code.count <= capacity, !code.isEmpty else { return nil }
        code.withUnsafeBytes { (writable + start).copyMemory(from: $0.baseAddress!, byteCount: code.count) }
        used = start + code.count
        return UnsafeRawPointer(base + start)
    }

    /// Points the rel32 field at `field` (inside placed code) to `target`.
    func link(field: UnsafeRawPointer, to target: UnsafeRawPointer) -> Bool {
        let offset = field - UnsafeRawPointer(base)
        guard offset >= 0, offset + 4 <= used else { return false }
        let relative = Int32(truncatingIfNeeded: target - (field + 4))
        (writable + offset).storeBytes(of: relative.littleEndian, as: Int32.self)
        return true
    }

    /// Empties the cache: nothing placed (the pages are reused as blocks are placed again).
    func reset() { used = 0 }

    /// Whether any page is writable and executable at once (never, by construction; tests ask).
    var hasWritableExecutablePage: Bool {
        guard let maps = fopen("/proc/self/maps", "r") else { return false }
        defer { fclose(maps) }
        let views = [UInt(bitPattern: base), UInt(bitPattern: writable)]
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), maps) != nil {
            let text = String(cString: line)
            let fields = text.split(separator: " ")
            guard fields.count >= 2 else { continue }
            let bounds = fields[0].split(separator: "-").compactMap { UInt($0, radix: 16) }
            guard bounds.count == 2, views.contains(where: { bounds[0] < $0 + UInt(capacity) && bounds[1] > $0 }) else {
                continue
            }
            if fields[1].hasPrefix("rwx") { return true }
        }
        return false
    }
}
