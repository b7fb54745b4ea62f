import Foundation
import Results
import Testing

@testable import Bench
@testable import Machine

extension NetworkNamespaceTests {
    /// VM to VM over a Linux bridge in the run's namespace: a serving guest (an echo, or a
    /// stream source) on one port, the measured guest on the other; hvbench stops the serving
    /// VM once the measured one has finished, and nothing is left behind.
    @Suite struct VMPairTests {
        static let benchmarks = ["net.vm2vm-rr", "net.vm2vm-tx-1500"]

        func run(_ id: String, systems: [SystemDefinition] = [], peers: [SystemDefinition] = []) async throws -> [BenchmarkResult]
        {
            let artifacts = try await Built.artifacts.value
            let output = temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: output) }
            var configuration = RunPlan(systems: systems, suite: tinySuite(id), outputDirectory: output)
            configuration.systems += peers
            configuration.network.backend = .tap
            let results = await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration).results
            for result in results where result.status == .ok {
                let serving = output.appendingPathComponent("logs/\(result.system)/\(id).serving.log")
                if result.system != "native" {
                    let log = try String(contentsOf: serving, encoding: .utf8)
                    #expect(log.contains("HVB1 serving"), "\(result.system): the serving guest served")
                    #expect(!log.contains("HVB1 fail"), "\(log)")
                }
            }
            #expect(TAPBackendBenchmarkTests().namespaceThreads() == 0, "no namespace thread is left after \(id)")
            return results
        }

        func expectOK(_ results: [BenchmarkResult], _ id: String) {
            for result in results {
                #expect(result.status == .ok, "\(result.system) \(id): \(result.reason ?? "")")
                #expect(result.netBackend == "tap")
                #expect(result.metrics.allSatisfy { $0.samples.allSatisfy { $0 > 0 && $0.isFinite } })
            }
        }

        @Test(
            .enabled(if: Host.hasKVM && Host.canMakeNamespaces, "needs /dev/kvm, /dev/net/tun and network namespaces"),
            arguments: benchmarks)
        func twoGuestsTalkAcrossTheBridgeUnderKVM(_ id: String) async throws {
            let results = try await run(id, systems: [.hardwareAssist, .paravirtIO])
            #expect(results.count == 2)
            expectOK(results, id)
            for result in results {
                // Exits are the measured VM's, counted per its own operations.
                let exits = try #require(result.exits)
                #expect(exits.operations > 0)
            }
        }

        @Test(.enabled(if: Host.canMakeNamespaces, Host.namespaceSkipMessage), arguments: benchmarks)
        func theEmulatorsGuestsPairUpToo(_ id: String) async throws {
            expectOK(try await run(id, systems: [.fullEmulation, .emulatorVirtio]), id)
        }

        /// Natively the two ends are the native runner and the kernel peer across the veth pair.
        @Test(
            .enabled(if: Host.canMakeNamespaces && Host.hasNsenter, "needs network namespaces and nsenter"), arguments: benchmarks
        )
        func nativeUsesTwoNativeEndpoints(_ id: String) async throws {
            expectOK(try await run(id, systems: [.native]), id)
        }

        /// The same pair of guests under QEMU, two QEMU processes on the same bridge, with the
        /// emulated e1000 and with virtio-net.
        @Test(
            .enabled(
                if: Host.hasKVM && Host.qemu != nil && Host.canMakeNamespaces && Host.hasNsenter,
                "needs /dev/kvm, QEMU, nsenter and network namespaces"),
            arguments: benchmarks)
        func qemuRunsTheSamePair(_ id: String) async throws {
            let results = try await run(id, peers: [.qemuKVM, .qemuKVMVirtio])
            #expect(results.count == 2)
            expectOK(results, id)
        }

        /// On the in-VMM backend there is no second VM: skipped, with the reason.
        @Test func theVMMBackendHasNoSecondVM() async throws {
            let artifacts = try await Built.artifacts.value
            let output = temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: output) }
            var configuration = RunPlan(
                systems: [.fullEmulation, .native], suite: tinySuite("net.vm2vm-rr"), outputDirectory: output)
            configuration.network.backend = .vmm
            let results = await BenchmarkRunner(artifacts: artifacts) { _ in }.run(configuration).results
            #expect(results.count == 2)
            for result in results {
                #expect(result.status == .skipped && result.reason?.contains("no second VM") == true, "\(result)")
            }
        }
    }
}
