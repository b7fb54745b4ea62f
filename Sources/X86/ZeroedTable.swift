import Glibc

/// A table of plain values that reads as all zeroes until written: an anonymous mapping, so
/// creating one costs the same whatever its size and a page costs something only once touched.
/// The mapping is shared (shmem), not private: lookups read a slot before they fill it, and a
/// private mapping would first map the zero page and then copy it on the write, a second fault
/// that flushes the TLB of every host CPU the process runs on.
/// The emulator's big per-VM tables (the decoded-instruction cache, the translator's block table,
/// the code map) are mostly never touched in a short boot; zeroing them up front was most of the
/// emulator's start-up. Only for types whose all-zero bit pattern is a valid (empty) value.
final class ZeroedTable<Element> {
    let pointer: UnsafeMutablePointer<Element>
    let count: Int
    private let bytes: Int
    private let mapped: Bool

    init(count: Int) {
        precondition(_isPOD(Element.self), "a zeroed table holds plain values only")
        self.count = count
        bytes = max(1, count * MemoryLayout<Element>.stride)
        let mapping = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        if let mapping, mapping != MAP_FAILED {
            pointer = mapping.bindMemory(to: Element.self, capacity: count)
            mapped = true
        } else {  // the host refused the mapping: ordinary memory, zeroed now
            let memory = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 16)
            memset(memory, 0, bytes)
            pointer = memory.bindMemory(to: Element.self, capacity: count)
            mapped = false
        }
    }

    deinit {
        if mapped { munmap(pointer, bytes) } else { UnsafeMutableRawPointer(pointer).deallocate() }
    }

    /// Every element back to zero; a mapped table gives its pages back to the host (MADV_REMOVE:
    /// on shared memory MADV_DONTNEED would keep the old contents).
    func clear() {
        if mapped, madvise(pointer, bytes, MADV_REMOVE) == 0 { return }
        memset(pointer, 0, bytes)
    }
}
