/// `rep movs` and `rep stos` forwards in 64-bit code, a page at a time: where the software TLB
/// already maps the destination page for writing (writable, dirty, no cached code: the fast
/// write path's own condition) and, for `movs`, the source page for reading, the elements that
/// lie in both pages are copied or filled in one host memory operation. Everything else (the
/// first element on a page, which fills the TLB; a fault; MMIO; code; overlapping copies,
/// whose element-by-element result a block copy would not give) takes the element path.
extension X86CPU {
    /// Copies or fills up to `limit` elements; how many it did (0: take the element path).
    @inline(never)
    func bulkString(_ op: Op, size: UInt8, sourceBase: UInt64, limit: Int) -> Int {
        let width = UInt64(size)
        let destination = registers[7]
        guard let target = mappedByTLB(destination, write: true) else { return 0 }
        var count = min(registers[1], (4096 - (destination & 0xFFF)) / width, UInt64(limit))
        if op == .stos {
            guard count > 0 else { return 0 }
            fill(target, count: Int(count), size: size, value: registers[0])
        } else {
            let source = registers[6] &+ sourceBase
            guard let origin = mappedByTLB(source, write: false) else { return 0 }
            count = min(count, (4096 - (source & 0xFFF)) / width)
            let bytes = Int(count * width)
            // A forward copy onto itself element by element differs from a block copy when the
            // destination starts inside the source.
            guard count > 0, !(target > origin && target < origin + bytes) else { return 0 }
            target.copyMemory(from: origin, byteCount: bytes)
            registers[6] &+= count * width
        }
        registers[7] &+= count * width
        registers[1] &-= count
        return Int(count)
    }

    /// `count` elements of `size` bytes, each `value`; the target need not be aligned: one
    /// element is stored, then the filled part copied over the rest, doubling each time.
    private func fill(_ target: UnsafeMutableRawPointer, count: Int, size: UInt8, value: UInt64) {
        let width = Int(size)
        if width == 1 {
            target.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: value), count: count)
            return
        }
        withUnsafeBytes(of: value.littleEndian) { target.copyMemory(from: $0.baseAddress!, byteCount: width) }
        var filled = width
        let total = count * width
        while filled < total {
            let step = min(filled, total - filled)
            (target + filled).copyMemory(from: target, byteCount: step)
            filled += step
        }
    }
}
