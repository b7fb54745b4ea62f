import ArgumentParser
import Bench
import Results
import Foundation

struct EnvCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env", abstract: "Print what hvbench knows about this host: CPU, kernel, KVM module, TSC, NUMA.")

    @Flag(help: "Print the environment record as JSON (as stored in results.json).")
    var json = false

    func run() async throws {
        var guestImage = "unavailable"
        var tool = ToolInfo(version: HVBench.version, gitCommit: nil)
        if let workspace = try? Workspace.locate() {
            tool = await toolInfo(workspace)
            do {
                guestImage = try await ArtifactBuilder(workspace: workspace).build().guestImageHash
            } catch {
                guestImage = "unavailable: \(error)"
            }
        }
        let environment = EnvironmentRecord.capture(guestImageHash: guestImage)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(environment), as: UTF8.self))
            return
        }
        let kvm = environment.kvm
        let lines: [(String, String)] = [
            ("hvbench", "\(tool.version), commit \(tool.gitCommit ?? "unknown")"),
            ("guest image", guestImage),
            ("host", environment.hostname),
            ("cpu", "\(environment.cpuModel) (\(environment.cpuVendor)), \(environment.logicalCPUs) logical CPUs"),
            ("memory", "\(environment.memoryMiB) MiB"),
            ("kernel", "\(environment.kernel), \(environment.operatingSystem)"),
            ("running in a VM", environment.runningInVM ? "yes (cpuid hypervisor bit)" : "no"),
            ("hardware virtualization", kvm.hardwareVirtualization ? "yes (vmx/svm)" : "no (no vmx/svm flag)"),
            ("kvm module", kvm.module),
            ("kvm usable", kvm.usable ? "yes" : "no: \(kvm.unavailableReason ?? "")"),
            ("kvm software-assisted", kvm.softwareAssisted ? "yes" : "no"),
            ("kvm nested parameter", kvm.nestedParameter ?? "n/a"),
            (
                "kvm paravirtual cpu",
                kvm.paravirtualFeatures.map {
                    ($0.isEmpty ? "none offered" : $0.joined(separator: ", "))
                        + " (offered by KVM; only the paravirt system presents them)"
                } ?? "n/a"
            ),
            ("tsc", "\(environment.tscKHz) kHz calibrated" + (kvm.tscKHz.map { ", \($0) kHz per KVM" } ?? "")),
            (
                "numa",
                environment.numaAvailable
                    ? environment.numaNodes.map {
                        "node \($0.id): \($0.memoryMiB) MiB, cpus \($0.cpus.map(String.init).joined(separator: ","))"
                    }.joined(separator: "; ")
                    : "unavailable"
            ),
        ]
        for (name, value) in lines { print("\(name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(value)") }
        print("\n\(environment.virtualizationNote)")
    }
}
