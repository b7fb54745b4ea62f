import Foundation
import Testing

@testable import FuzzTargets

/// Every committed fuzz input (seeds, and each crash a fuzzing run found once it was fixed)
/// goes through its target on every test run, so what was found stays fixed.
@Suite struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FuzzCorpus")

    static func inputs(_ target: String) -> [URL] {
        let folder = corpus.appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.sorted().map { folder.appendingPathComponent($0) }
    }

    @Test(arguments: FuzzTargets.all.map(\.name))
    func committedInputsKeepEveryProperty(_ target: String) throws {
        let run = try #require(FuzzTargets.named(target))
        let files = Self.inputs(target)
        #expect(!files.isEmpty, "every target has a committed seed corpus in Tests/FuzzCorpus/\(target)")
        for file in files {
            let violation = run([UInt8](try Data(contentsOf: file)))
            #expect(violation == nil, "\(file.lastPathComponent): \(violation ?? "")")
        }
    }

    /// The empty input and a few degenerate ones are valid programs for every target.
    @Test(arguments: FuzzTargets.all.map(\.name))
    func degenerateInputs(_ target: String) throws {
        let run = try #require(FuzzTargets.named(target))
        for input in [[], [0], [UInt8](repeating: 0xFF, count: 4096), Array("HVB1 ".utf8)] {
            #expect(run(input) == nil, "\(target) on \(input.count) bytes")
        }
    }

    @Test func exhaustedInputsReadAsZeros() {
        var input = FuzzInput([1, 2])
        #expect(input.value(width: 4) == 0x0201)
        #expect(input.isExhausted)
        #expect(input.byte() == 0 && input.take(10).isEmpty)
    }
}
