import Foundation
import Results
import Machine

/// The disk image a disk benchmark runs on, and the rules that keep a user's data safe:
///
/// - an image hvbench creates carries a signature in its last sector, outside the benchmark
///   region, so hvbench knows it may prepare (overwrite) the region of such an image again;
/// - any other image is the user's: read benchmarks open it read-only and never prepare it
///   (their reads are then not pattern-checked), and write benchmarks refuse it unless the
///   user passed `--overwrite-disk-image`, and then write only inside the benchmark region;
/// - a path that does not exist is an error: only the default image in the run folder is created.
public enum BenchmarkDisk {
    static let signature = Array("HVBENCH-DISK-IMAGE v1: created by hvbench for its disk benchmarks\n".utf8)
    /// The default image: 64 MiB, sparse, in the run folder.
    public static let defaultSize: UInt64 = 64 << 20

    public struct Problem: Error, CustomStringConvertible {
        public let description: String
    }

    /// An opened image, and whether its benchmark region holds hvbench's pattern (so the guest
    /// checks what it reads).
    public struct Opened {
        public let image: DiskImage
        public let patterned: Bool
    }

    /// Whether the image was created by hvbench (its last sector holds the signature).
    public static func isOwn(_ image: DiskImage) -> Bool {
        guard image.sectors > 0 else { return false }
        var sector = [UInt8](repeating: 0, count: DiskImage.sectorSize)
        do {
            try sector.withUnsafeMutableBytes { try image.read(into: $0, at: (image.sectors - 1) * UInt64(DiskImage.sectorSize)) }
        } catch { return false }
        return sector.starts(with: signature)
    }

    /// Checks, before anything is measured, that the benchmarks may use the image at `path`;
    /// returns whether it is hvbench's own.
    @discardableResult
    public static func check(path: String, writes: Bool, overwrite: Bool, regionSectors: UInt64) throws -> Bool {
        guard FileManager.default.fileExists(atPath: path) else {
            throw Problem(
                description:
                    "disk image \(path) does not exist; give an existing image, or leave out --disk-image to let hvbench "
                    + "create one in the run folder")
        }
        let image: DiskImage
        do { image = try DiskImage(path: path, access: .readOnly) } catch { throw Problem(description: "\(error)") }
        let own = isOwn(image)
        guard writes, !own, !overwrite else { return own }
        let mebibytes = Double(regionSectors * UInt64(DiskImage.sectorSize)) / 1_048_576
        throw Problem(
            description:
                "disk image \(path) was not created by hvbench, and write benchmarks would overwrite its first "
                + "\(String(format: "%g", mebibytes)) MiB; pass --overwrite-disk-image to allow that, or run only read benchmarks "
                + "(which open it read-only)")
    }

    /// Opens (or, for the default path, creates) the image for one benchmark and prepares its
    /// region when the rules allow.
    public static func open(
        path: String, isDefault: Bool, writes: Bool, overwrite: Bool, regionSectors: UInt64, direct: Bool
    ) throws -> Opened {
        if isDefault && !FileManager.default.fileExists(atPath: path) {
            let image = try DiskImage.create(path: path, size: defaultSize, direct: direct)
            try sign(image)
            try prepareRegion(image, regionSectors, own: true)
            return Opened(image: image, patterned: true)
        }
        let own = try check(path: path, writes: writes, overwrite: overwrite, regionSectors: regionSectors)
        if !own && !writes {
            return Opened(image: try DiskImage(path: path, access: .readOnly, direct: direct), patterned: false)
        }
        let image = try DiskImage(path: path, access: .readWrite, direct: direct)
        try prepareRegion(image, regionSectors, own: own)
        return Opened(image: image, patterned: true)
    }

    private static func prepareRegion(_ image: DiskImage, _ regionSectors: UInt64, own: Bool) throws {
        // The signature sector lies past the region of an own image; a user's image must hold the region.
        guard image.sectors >= regionSectors + (own ? 1 : 0) else {
            throw Problem(
                description: "disk image \(image.path) has \(image.sectors) sectors; the benchmarks need \(regionSectors)")
        }
        try DiskPattern.prepare(image, sectors: regionSectors)
    }

    private static func sign(_ image: DiskImage) throws {
        var sector = [UInt8](repeating: 0, count: DiskImage.sectorSize)
        sector.replaceSubrange(0..<signature.count, with: signature)
        try sector.withUnsafeBytes { try image.write(from: $0, at: (image.sectors - 1) * UInt64(DiskImage.sectorSize)) }
    }
}
