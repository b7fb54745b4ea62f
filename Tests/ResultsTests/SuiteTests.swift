import Foundation
import Testing

@testable import Results

@Suite struct SuiteTests {
    @Test func parsesDefaultsAndOverrides() throws {
        let suite = try Suite.parse(
            """
            name: t
            repetitions: 3
            benchmarks:
              - id: cpu.int
                iterations: 100
              - id: cpu.mem-bw
                size: 65536
                repetitions: 7
            """, file: "t.yaml")
        #expect(suite.name == "t")
        #expect(suite.entries.map(\.id) == ["cpu.int", "cpu.mem-bw"])
        #expect(suite.entries[0].iterations == 100 && suite.entries[0].repetitions == 3 && suite.entries[0].warmups == 1)
        #expect(suite.entries[1].iterations == BenchmarkDefinition.named("cpu.mem-bw")!.defaultIterations)
        #expect(suite.entries[1].sizeBytes == 65536 && suite.entries[1].repetitions == 7)
    }

    func error(_ yaml: String) -> Suite.LoadError? {
        do {
            _ = try Suite.parse(yaml, file: "bad.yaml")
            return nil
        } catch let error as Suite.LoadError {
            return error
        } catch {
            return nil
        }
    }

    @Test func malformedYAMLNamesFileAndLine() throws {
        let problem = try #require(error("name: t\nbenchmarks:\n  - id: cpu.int\n    iterations: [1, 2\n"))
        #expect(problem.file == "bad.yaml")
        #expect(problem.line != nil)
        #expect(problem.description.hasPrefix("bad.yaml:"))
        #expect(problem.message.contains("malformed YAML"))
    }

    @Test func schemaErrorsPointAtTheOffendingLine() throws {
        let unknownBenchmark = try #require(error("name: t\nbenchmarks:\n  - id: cpu.int\n  - id: cpu.warp-drive\n"))
        #expect(unknownBenchmark.line == 4)
        #expect(unknownBenchmark.message.contains("unknown benchmark 'cpu.warp-drive'"))
        let unknownKey = try #require(error("name: t\nrepetitons: 3\nbenchmarks:\n  - id: cpu.int\n"))
        #expect(unknownKey.line == 2)
        let badNumber = try #require(error("name: t\nbenchmarks:\n  - id: cpu.int\n    iterations: lots\n"))
        #expect(badNumber.line == 4)
        let zero = try #require(error("name: t\nbenchmarks:\n  - id: cpu.int\n    iterations: 0\n"))
        #expect(zero.message.contains("iterations must be an integer from 1 to 1000000000000"))
        // Numbers too large for the guest, or for the products hvbench forms from them, are errors.
        let huge = try #require(error("name: t\ntimeout: 10000000000000000\nbenchmarks:\n  - id: cpu.int\n"))
        #expect(huge.line == 2)
        #expect(huge.message.contains("timeout must be an integer from 1 to 86400"))
        let past64 = try #require(error("name: t\nbenchmarks:\n  - id: cpu.int\n    iterations: 99999999999999999999999\n"))
        #expect(past64.line == 4)
        #expect(error("name: t\nrepetitions: 10001\nbenchmarks:\n  - id: cpu.int\n")?.line == 2)
        #expect(error("name: t\nbenchmarks:\n  - id: cpu.mem-bw\n    size: 1\n")?.line == 4)
        #expect(error("name: t\n") != nil)
        #expect(error("benchmarks: []\n") != nil)
        #expect(error("name: t\nbenchmarks:\n  - id: cpu.int\n  - id: cpu.int\n")?.line == 4)
        #expect(error("") != nil)
        #expect(error("- just\n- a list\n") != nil)
    }

    @Test func shippedSuitesLoadAndNameOnlyKnownBenchmarks() throws {
        let workspace = try Workspace.locate()
        let cpuBenchmarks = Set(
            BenchmarkDefinition.all.filter {
                !$0.needsNIC && !$0.needsDisk && $0.group != .memory && $0.guest == .benchmarkGuest
            }.map(\.id))
        for name in ["quick", "cpu"] {
            let suite = try Suite.load(named: name, in: workspace)
            #expect(Set(suite.entries.map(\.id)) == cpuBenchmarks, "suite \(name) covers every CPU benchmark")
        }
        #expect(
            Set(try Suite.load(named: "net", in: workspace).entries.map(\.id))
                == Set(BenchmarkDefinition.all.filter { $0.needsNIC && $0.guest == .benchmarkGuest }.map(\.id)))
        #expect(
            Set(try Suite.load(named: "disk", in: workspace).entries.map(\.id))
                == Set(BenchmarkDefinition.all.filter { $0.needsDisk && $0.guest == .benchmarkGuest }.map(\.id)))
        #expect(
            Set(try Suite.load(named: "memory", in: workspace).entries.map(\.id))
                == Set(BenchmarkDefinition.all.filter { $0.group == .memory && $0.guest == .benchmarkGuest }.map(\.id)))
        #expect(
            Set(try Suite.load(named: "linux", in: workspace).entries.map(\.id))
                == Set(BenchmarkDefinition.all.filter { $0.guest == .linux }.map(\.id)))
        #expect(throws: Suite.LoadError.self) { try Suite.load(named: "no-such-suite", in: workspace) }
    }
}
