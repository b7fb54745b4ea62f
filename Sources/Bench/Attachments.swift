import Foundation
import Machine
import Results

/// What a benchmark needs outside its workload, for every kind of measurement with one workload
/// (a VM, the native process, a QEMU): the far end of its NIC over a TAP link, and its disk.
/// Opened before the workload starts; checked, logged and closed after it ends.
struct Attachments {
    /// Why the measurement cannot start: a skip (the host cannot make a link) or a failure.
    struct Refused: Error {
        let outcome: MeasurementOutcome
    }

    private(set) var link: TAPLink?
    private(set) var disk: BenchmarkDisk.Opened?

    /// Opens the TAP link (under `--net-backend tap`, where the benchmark has a peer role) for a
    /// workload attached as `attachment`, and the disk; writes into `job` what the workload must
    /// know of them.
    static func open(
        _ context: MeasurementContext, attachment: TAPLink.Attachment, job: inout GuestJob
    ) throws(Refused) -> Attachments {
        var opened = Attachments()
        let benchmark = context.benchmark
        if context.plan.network.backend == .tap, let role = benchmark?.peerRole {
            switch TAPLink.make(for: role, attachment: attachment, context.plan) {
            case .success(let link):
                opened.link = link
                job.udp = link.endpoints
            case .failure(let problem): throw Refused(outcome: .skipped(problem.description))
            }
        }
        if let benchmark, benchmark.needsDisk {
            do {
                let disk = try openDisk(benchmark, context.plan)
                opened.disk = disk
                job.regionSectors = context.plan.disk.regionSectors
                // A region without hvbench's pattern is read unchecked.
                job.diskVerify = disk.patterned
            } catch {
                opened.close()
                throw Refused(outcome: .failed("\(error)"))
            }
        }
        return opened
    }

    func close() { link?.close() }

    /// A measured outcome stays measured only if the written region holds what was written and
    /// the link carried what the workload said it sent.
    func check(_ outcome: MeasurementOutcome, _ context: MeasurementContext, by runner: BenchmarkRunner)
        -> MeasurementOutcome
    {
        guard case .measured = outcome else { return outcome }
        if let disk, let problem = Self.verifyWrites(context, disk.image) { return .failed(problem) }
        if let link {
            let problem = link.problem(afterGuestSent: context.entry.timedOperations)
            context.log("# \(link.summary)\n", by: runner, part: ".tap")
            if let problem { return .failed(problem) }
        }
        return outcome
    }

    /// The disk image for a disk benchmark, opened and prepared by the data-safety rules of
    /// `BenchmarkDisk`.
    private static func openDisk(_ benchmark: BenchmarkDefinition, _ plan: RunPlan) throws -> BenchmarkDisk.Opened {
        let path = plan.disk.imagePath ?? plan.outputDirectory.appendingPathComponent("disk.img").path
        if plan.disk.imagePath == nil {
            try FileManager.default.createDirectory(at: plan.outputDirectory, withIntermediateDirectories: true)
        }
        return try BenchmarkDisk.open(
            path: path, isDefault: plan.disk.imagePath == nil, writes: benchmark.writesDisk, overwrite: plan.disk.overwrite,
            regionSectors: plan.disk.regionSectors, direct: plan.disk.direct)
    }

    /// After a write benchmark: the region must hold only the prepared and the written pattern,
    /// and some sectors must have been written.
    private static func verifyWrites(_ context: MeasurementContext, _ disk: DiskImage) -> String? {
        // The Linux guest's fio checks what it wrote itself (crc32c), over hvbench's pattern.
        guard let benchmark = context.benchmark, benchmark.writesDisk, benchmark.guest == .benchmarkGuest else {
            return nil
        }
        do {
            switch try DiskPattern.verify(disk, sectors: context.plan.disk.regionSectors) {
            case .success(let written): return written > 0 ? nil : "no sector of the disk holds the written pattern"
            case .failure(let problem): return "data check after writing: \(problem)"
            }
        } catch {
            return "data check after writing: \(error)"
        }
    }
}
