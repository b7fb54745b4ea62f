import Results
import Machine

/// The sector pattern the guest's disk benchmarks read and write (Workloads/guest/common/io.h):
/// 64 words per sector, a function of the sector number and a seed (0 = as prepared by hvbench,
/// 1 = written by a benchmark).
public enum DiskPattern {
    @inline(__always)
    public static func word(lba: UInt64, index: UInt32, seed: UInt64) -> UInt64 {
        var x = (lba &+ 1) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(index &+ 1) &* 0xD1B5_4A32_D192_ED03 ^ seed &* 0xA076_1D64_78BD_642F
        x ^= x >> 31
        return x
    }

    /// Writes the seed-0 pattern over the first `sectors` sectors.
    public static func prepare(_ disk: DiskImage, sectors: UInt64) throws {
        var chunk = [UInt64](repeating: 0, count: 64 * 256)
        var lba: UInt64 = 0
        while lba < sectors {
            let count = Int(min(256, sectors - lba))
            for s in 0..<count {
                for w in 0..<64 { chunk[s * 64 + w] = word(lba: lba + UInt64(s), index: UInt32(w), seed: 0) }
            }
            try chunk.withUnsafeBytes {
                try disk.write(from: UnsafeRawBufferPointer(rebasing: $0[0..<(count * 512)]), at: lba * 512)
            }
            lba += UInt64(count)
        }
    }

    /// After write benchmarks: every sector must hold the prepared or the written pattern.
    /// Returns the number of sectors written, or the first sector that holds neither.
    public static func verify(_ disk: DiskImage, sectors: UInt64) throws -> Result<Int, DiskError> {
        var chunk = [UInt64](repeating: 0, count: 64 * 256)
        var written = 0
        var lba: UInt64 = 0
        while lba < sectors {
            let count = Int(min(256, sectors - lba))
            try chunk.withUnsafeMutableBytes {
                try disk.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<(count * 512)]), at: lba * 512)
            }
            for s in 0..<count {
                let sector = lba + UInt64(s)
                let base = s * 64
                if (0..<64).allSatisfy({ chunk[base + $0] == word(lba: sector, index: UInt32($0), seed: 1) }) {
                    written += 1
                } else if !(0..<64).allSatisfy({ chunk[base + $0] == word(lba: sector, index: UInt32($0), seed: 0) }) {
                    let bad = (0..<64).first { chunk[base + $0] != word(lba: sector, index: UInt32($0), seed: 0) } ?? 0
                    return .failure(
                        DiskError(
                            "sector \(sector) holds neither the prepared nor the written pattern (first difference at byte \(bad * 8))"
                        ))
                }
            }
            lba += UInt64(count)
        }
        return .success(written)
    }
}
