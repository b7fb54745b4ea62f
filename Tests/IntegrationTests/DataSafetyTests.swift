import Foundation
import Machine
import Testing

@testable import Bench
import Results

/// The findings of the fresh-clone review, replayed through the hvbench executable: a user's
/// files are never destroyed, bad input is exit 2 with a plain message (never a trap), and
/// nothing is measured before the output folder is known to be usable.
@Suite(.serialized) struct DataSafetyTests {
    func hvbench(_ arguments: [String]) async throws -> ProcessRunner.Output {
        let executable = try #require(CommandLineTests.executable, "the hvbench executable must be built next to the tests")
        return try await ProcessRunner.run(executable, arguments, timeout: 900)
    }

    /// A 32 MiB "user" image: a magic header, and a second one past the 16 MiB benchmark region.
    func userImage(in directory: URL) throws -> (path: String, fingerprint: () throws -> Data) {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("user.img").path
        FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: 32 << 20)
        try handle.seek(toOffset: 0)
        handle.write(Data("MAGIC-USER-DATA".utf8))
        try handle.seek(toOffset: 20 << 20)
        handle.write(Data("MAGIC-BEYOND-THE-REGION".utf8))
        try handle.close()
        return (path, { try Data(contentsOf: URL(fileURLWithPath: path)) })
    }

    @Test func aUsersImageIsReadReadOnlyAndNeverPrepared() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (path, fingerprint) = try userImage(in: directory)
        let before = try fingerprint()
        let modes = Host.hasKVM ? "native,hardware-assist,paravirt-io" : "native"
        let output = try await hvbench([
            "run", "--mode", modes, "--bench", "disk.seq-read", "--bench", "disk.rand-read-4k", "--iterations", "2",
            "--repetitions", "2", "--disk-image", path, "--out", directory.appendingPathComponent("run").path,
        ])
        #expect(output.exitCode == 0, "\(output.standardError)")
        #expect(try fingerprint() == before, "the user's image changed")
        let run = try RunResults.load(path: directory.appendingPathComponent("run").path)
        #expect(run.results.allSatisfy { $0.status == .ok }, "\(run.results.map { "\($0.system) \($0.reason ?? "")" })")
    }

    @Test func writeBenchmarksRefuseAUsersImageUnlessAllowedAndThenStayInTheRegion() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (path, fingerprint) = try userImage(in: directory)
        let before = try fingerprint()
        let refused = try await hvbench([
            "run", "--mode", "native", "--bench", "disk.rand-write-4k", "--iterations", "2", "--repetitions", "2",
            "--disk-image", path, "--out", directory.appendingPathComponent("refused").path,
        ])
        #expect(refused.exitCode == 2)
        #expect(refused.standardError.contains("was not created by hvbench"), "\(refused.standardError)")
        #expect(refused.standardError.contains("--overwrite-disk-image"))
        #expect(try fingerprint() == before)
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("refused/results.json").path))

        let allowed = try await hvbench([
            "run", "--mode", "native", "--bench", "disk.rand-write-4k", "--iterations", "2", "--repetitions", "2",
            "--disk-image", path, "--overwrite-disk-image", "--out", directory.appendingPathComponent("allowed").path,
        ])
        #expect(allowed.exitCode == 0, "\(allowed.standardError)")
        let after = try fingerprint()
        #expect(after.count == before.count, "the image was resized")
        #expect(after.prefix(15) != Data("MAGIC-USER-DATA".utf8), "the region was not written")
        let region = Int(DiskSettings.defaultRegionSectors) * 512
        #expect(after[region...] == before[region...], "bytes outside the benchmark region changed")
    }

    @Test func aMistypedImagePathIsAnErrorAndCreatesNothing() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("typo.img").path
        let output = try await hvbench([
            "run", "--mode", "native", "--bench", "disk.seq-read", "--disk-image", missing, "--out",
            directory.appendingPathComponent("run").path,
        ])
        #expect(output.exitCode == 2)
        #expect(output.standardError.contains("typo.img does not exist"), "\(output.standardError)")
        #expect(!FileManager.default.fileExists(atPath: missing))
    }

    @Test func hvbenchsOwnImageIsSignedAndReusable() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = directory.appendingPathComponent("first")
        let output = try await hvbench([
            "run", "--mode", "native", "--bench", "disk.rand-write-4k", "--iterations", "2", "--repetitions", "2", "--out",
            first.path,
        ])
        #expect(output.exitCode == 0, "\(output.standardError)")
        let image = first.appendingPathComponent("disk.img").path
        #expect(BenchmarkDisk.isOwn(try DiskImage(path: image, access: .readOnly)))
        // Reused by a later run without --overwrite-disk-image: it is hvbench's own.
        let again = try await hvbench([
            "run", "--mode", "native", "--bench", "disk.rand-write-4k", "--iterations", "2", "--repetitions", "2",
            "--disk-image", image, "--out", directory.appendingPathComponent("second").path,
        ])
        #expect(again.exitCode == 0, "\(again.standardError)")
    }

    @Test func hugeNumbersOnTheCommandLineAreErrorsNotTraps() async throws {
        for arguments in [
            ["--timeout", "10000000000000000"], ["--repetitions", "100000000"], ["--iterations", "18446744073709551615"],
            ["--inject-slowdown", "100000"], ["--budget", "inf"], ["--memory", "999999999999"], ["--io-poll-us", "1000001"],
            ["--vcpus", "9"], ["--vcpus", "0"],
        ] {
            let output = try await hvbench(["run", "--mode", "native", "--bench", "cpu.int"] + arguments)
            #expect(output.exitCode == 2, "\(arguments): \(output.statusDescription) \(output.standardError)")
            #expect(output.standardError.contains("must be between"), "\(arguments): \(output.standardError)")
        }
        for (arguments, message) in [
            (["--pin", "1,x"], "--pin takes comma-separated CPU numbers"),
            (["--pin", "4000"], "CPU 4000 does not exist on this host"),
            (["--pin", "0", "--numa-node", "0"], "--pin and --numa-node both place threads"),
        ] {
            let output = try await hvbench(["run", "--mode", "native", "--bench", "cpu.int"] + arguments)
            #expect(output.exitCode == 2 && output.standardError.contains(message), "\(arguments): \(output.standardError)")
        }
        let boot = try await hvbench(["boot", "no-such-kernel", "--io-poll-us", "5000"])
        #expect(
            boot.exitCode == 2 && boot.standardError.contains("--io-poll-us must be between 0 and 1000"), "\(boot.standardError)")
        let compare = try await hvbench(["compare", "a", "b", "--threshold", "nan"])
        #expect(compare.exitCode == 2, "\(compare.standardError)")
    }

    @Test func anUnusableOutFolderIsFoundBeforeAnythingRuns() async throws {
        let output = try await hvbench([
            "run", "--mode", "native", "--bench", "cpu.int", "--iterations", "1000", "--out", "/proc/hvbench-cannot-write-here",
        ])
        #expect(output.exitCode == 2)
        #expect(output.standardError.contains("/proc/hvbench-cannot-write-here"), "\(output.standardError)")
        #expect(!output.standardError.contains("NSCocoaErrorDomain"), "\(output.standardError)")
        // The progress notes go to stderr: the first thing a run does after its checks is build the guest.
        #expect(!output.standardError.contains("building the benchmark guest"), "measured before checking --out")
    }

    @Test func anEarlierRunIsReplacedOnlyWithForceAndNeverMixed() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let arguments = ["run", "--mode", "native", "--bench", "cpu.int", "--iterations", "1000", "--repetitions", "2"]
        let first = try await hvbench(arguments + ["--out", directory.path])
        #expect(first.exitCode == 0, "\(first.standardError)")
        let stale = directory.appendingPathComponent("logs/native/stale.log")
        try writeAtomically(Data("from an earlier run".utf8), to: stale)
        let refused = try await hvbench(arguments + ["--out", directory.path])
        #expect(refused.exitCode == 2)
        #expect(refused.standardError.contains("already holds a run"), "\(refused.standardError)")
        #expect(FileManager.default.fileExists(atPath: stale.path))
        let replaced = try await hvbench(arguments + ["--out", directory.path, "--force"])
        #expect(replaced.exitCode == 0, "\(replaced.standardError)")
        #expect(!FileManager.default.fileExists(atPath: stale.path), "the earlier run's files were kept")
        #expect(try RunResults.load(path: directory.path).results.count == 1)
        // A folder with files that are not a run is never emptied, even with --force.
        let foreign = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: foreign) }
        try writeAtomically(Data("mine".utf8), to: foreign.appendingPathComponent("notes.txt"))
        let notRun = try await hvbench(arguments + ["--out", foreign.path, "--force"])
        #expect(notRun.exitCode == 2)
        #expect(notRun.standardError.contains("notes.txt"), "\(notRun.standardError)")
        #expect(FileManager.default.fileExists(atPath: foreign.appendingPathComponent("notes.txt").path))
    }

    @Test func aMalformedClaimsFileStopsTheRunNamingFileAndLine() async throws {
        let workspace = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: workspace) }
        // A copy of the workspace's Workloads with one broken claim, found through HVBENCH_ROOT.
        let root = try Workspace.locate().root
        try FileManager.default.createDirectory(at: workspace, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: root.appendingPathComponent("Workloads"), to: workspace.appendingPathComponent("Workloads"))
        try "id: broken\nsource: [\n".write(
            to: workspace.appendingPathComponent("Workloads/claims/zz-broken.yaml"), atomically: true, encoding: .utf8)
        let executable = try #require(CommandLineTests.executable)
        let output = try await ProcessRunner.run(
            "/usr/bin/env",
            [
                "HVBENCH_ROOT=\(workspace.path)", executable, "run", "--mode", "native", "--bench", "cpu.int", "--out",
                workspace.appendingPathComponent("run").path,
            ], timeout: 300)
        #expect(output.exitCode == 2)
        #expect(output.standardError.contains("zz-broken.yaml:"), "\(output.standardError)")
    }

    @Test func aSlowedRunIsRecordedAndCannotBecomeABaseline() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let run = try await hvbench([
            "run", "--mode", "native", "--bench", "cpu.int", "--iterations", "1000", "--repetitions", "2", "--inject-slowdown",
            "10", "--out", directory.path,
        ])
        #expect(run.exitCode == 0, "\(run.standardError)")
        #expect(try RunResults.load(path: directory.path).injectedSlowdownPercent == 10)
        #expect(run.standardOutput.contains { $0.contains("WARNING: This run was slowed down on purpose") })
        let save = try await hvbench(["baseline", "save", directory.path, "--name", "hvbench-test-refused"])
        #expect(save.exitCode == 2)
        #expect(save.standardError.contains("cannot be a baseline"), "\(save.standardError)")
    }

    /// The CI gate: cpu.int ok in the baseline and failed in the current run used to print
    /// MISSING and exit 0.
    @Test func compareFailsTheGateWhenABenchmarkStopsWorking() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = try await hvbench([
            "run", "--mode", "native", "--bench", "cpu.int", "--iterations", "1000", "--repetitions", "5", "--out",
            directory.appendingPathComponent("baseline").path,
        ])
        #expect(good.exitCode == 0, "\(good.standardError)")
        var failed = try RunResults.load(path: directory.appendingPathComponent("baseline").path)
        failed.results[0].status = .failed
        failed.results[0].reason = "watchdog stopped the guest after 60.0 s"
        failed.results[0].metrics = []
        let current = directory.appendingPathComponent("current.json")
        try writeAtomically(try failed.encoded(), to: current)
        let junit = directory.appendingPathComponent("compare.xml")
        let compare = try await hvbench([
            "compare", directory.appendingPathComponent("baseline").path, current.path, "--junit", junit.path,
        ])
        #expect(compare.exitCode == 2, "\(compare.standardOutput)")
        #expect(
            compare.standardOutput.contains { $0.contains("LOST: failed in the current run: watchdog") },
            "\(compare.standardOutput.joined(separator: "\n"))")
        #expect(try String(contentsOf: junit, encoding: .utf8).contains("type=\"lost\""))
    }

    /// `--adaptive --repetitions 1` stopped after one round claiming its CI target was met.
    @Test func anAdaptiveRunNeedsFiveSamplesBeforeItsCICounts() async throws {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        var configuration = RunPlan(
            systems: [.native], suite: tinySuite("cpu.int", iterations: 1000, repetitions: 1), outputDirectory: output)
        configuration.adaptive = AdaptivePolicy(targetRelativeHalfWidth: 10, budgetSeconds: 600, maxRounds: 20)
        let result = try #require(await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration).results.first)
        #expect(result.status == .ok, "\(result.reason ?? "")")
        #expect(result.ciTargetMet == true)
        #expect((result.rounds ?? 0) >= 5, "stopped after \(result.rounds ?? 0) one-sample rounds")
        #expect(result.metrics[0].samples.count == result.rounds)
    }
}
