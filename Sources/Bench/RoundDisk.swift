import Foundation
import Machine
import Results

/// The disk of a disk benchmark, for every kind of round (native, guest, QEMU peer).
extension BenchmarkRunner {
    /// The disk image for a disk benchmark, opened and prepared by the data-safety rules of
    /// `BenchmarkDisk`.
    func openDisk(_ definition: BenchmarkDefinition, _ configuration: RunConfiguration) throws -> BenchmarkDisk.Opened {
        let path = configuration.diskImagePath ?? configuration.outputDirectory.appendingPathComponent("disk.img").path
        if configuration.diskImagePath == nil {
            try FileManager.default.createDirectory(at: configuration.outputDirectory, withIntermediateDirectories: true)
        }
        return try BenchmarkDisk.open(
            path: path, isDefault: configuration.diskImagePath == nil, writes: definition.writesDisk,
            overwrite: configuration.overwriteDiskImage, regionSectors: configuration.diskRegionSectors,
            direct: configuration.directIO)
    }

    /// After a write benchmark: the region must hold only the prepared and the written pattern,
    /// and some sectors must have been written.
    func verifyWrites(_ entry: Suite.Entry, _ disk: DiskImage, _ configuration: RunConfiguration) -> String? {
        guard BenchmarkDefinition.named(entry.id)?.writesDisk == true else { return nil }
        do {
            switch try DiskPattern.verify(disk, sectors: configuration.diskRegionSectors) {
            case .success(let written): return written > 0 ? nil : "no sector of the disk holds the written pattern"
            case .failure(let problem): return "data check after writing: \(problem)"
            }
        } catch {
            return "data check after writing: \(error)"
        }
    }
}
