import Foundation
import Testing

@testable import Bench
import Results
import VMM

/// The paravirt system presents KVM's paravirtual CPU interface and the guest negotiates it;
/// the other systems present an unmodified machine, in which the guest finds none.
@Suite struct ParavirtualCPUTests {
    func console(_ system: SystemDefinition) async throws -> (BenchmarkResult, String) {
        let artifacts = try await Built.artifacts.value
        let output = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let plan = RunPlan(systems: [system], suite: tinySuite("irq.timer"), outputDirectory: output)
        let result = try #require(await BenchmarkRunner(artifacts: artifacts) { _ in }.run(plan).results.first)
        let log = output.appendingPathComponent("logs/\(system.name)/irq.timer.log")
        return (result, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func theParavirtSystemPresentsKVMsInterfaceAndTheGuestUsesKVMClockAndPVEOI() async throws {
        let (result, log) = try await console(.paravirt)
        #expect(result.status == .ok, "\(result.reason ?? "")")
        let line = try #require(log.split(separator: "\n").first { $0.hasPrefix("hvbench-guest: kvm-pv features=0x") })
        let hex = line.split(separator: " ")[2].dropFirst("features=0x".count)
        let features = try #require(UInt32(hex, radix: 16))
        #expect(features & (1 << 6) != 0, "PV EOI offered: \(line)")
        #expect(line.contains(" pv-eoi="), "\(line)")
        // kvmclock gives the guest its TSC rate: the host's, under KVM.
        let clock = try #require(line.split(separator: " ").first { $0.hasPrefix("kvmclock-khz=") })
        let khz = try #require(Double(clock.dropFirst("kvmclock-khz=".count)))
        let host = Double(TSC.calibratedKilohertz)
        #expect(abs(khz - host) < host * 0.01, "kvmclock says \(khz) kHz, the host's TSC runs at \(host) kHz")
    }

    @Test(.enabled(if: Host.hasKVM, Host.kvmSkipMessage))
    func theOtherSystemsPresentAnUnmodifiedMachine() async throws {
        for system in [SystemDefinition.paravirtIO, .hardwareAssist, .fullEmulation] {
            let (result, log) = try await console(system)
            #expect(result.status == .ok, "\(system.name): \(result.reason ?? "")")
            #expect(!log.contains("kvm-pv"), "\(system.name) presented KVM's leaves")
        }
    }
}
