import CNUMA
import Foundation
import KVM
import Machine
import VMM
import Results

extension EnvironmentRecord {
    /// Reads this host: CPU, kernel, KVM module and its parameters, TSC, NUMA nodes.
    public static func capture(
        guestImageHash: String?, qemuVersion: String? = nil, numaNodeUsed: Int? = nil, pinnedCPUs: [Int]? = nil
    ) -> EnvironmentRecord {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        func field(_ name: String) -> String? {
            for line in cpuinfo.split(separator: "\n") where line.hasPrefix(name) {
                if let colon = line.firstIndex(of: ":") {
                    return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
            }
            return nil
        }
        let flags = (field("flags") ?? "").split(separator: " ").map(String.init).sorted()
        let hasHardwareVirtualization = flags.contains("vmx") || flags.contains("svm")

        let module =
            ["kvm_pvm", "kvm_intel", "kvm_amd"].first { FileManager.default.fileExists(atPath: "/sys/module/\($0)") } ?? "none"
        let nested = module == "none" || module == "kvm_pvm" ? nil : readTrimmed("/sys/module/\(module)/parameters/nested")
        var kvmTSC: Int?
        var paravirtualFeatures: [String]?
        let reason = KVMSystem.unavailabilityReason()
        if reason == nil, let system = try? KVMSystem() {
            if let khz = try? system.defaultTSCKilohertz(), khz > 0 { kvmTSC = khz }
            paravirtualFeatures = system.paravirtualFeatures.names
        }
        var kvm = KVMInfo(
            module: module, devicePresent: FileManager.default.fileExists(atPath: KVMSystem.devicePath), usable: reason == nil,
            unavailableReason: reason, hardwareVirtualization: hasHardwareVirtualization,
            softwareAssisted: module == "kvm_pvm" || (module != "none" && !hasHardwareVirtualization), nestedParameter: nested,
            tscKHz: kvmTSC)
        kvm.paravirtualFeatures = paravirtualFeatures

        var nodes: [NUMANode] = []
        for node in NUMAPlacement.nodes {
            var cpus: [Int] = []
            if let mask = numa_allocate_cpumask() {
                if numa_node_to_cpus(Int32(node), mask) == 0 {
                    for cpu in 0..<Int(numa_num_configured_cpus()) where numa_bitmask_isbitset(mask, UInt32(cpu)) != 0 {
                        cpus.append(cpu)
                    }
                }
                numa_bitmask_free(mask)
            }
            nodes.append(NUMANode(id: node, memoryMiB: Int(NUMAPlacement.memory(ofNode: node).total >> 20), cpus: cpus))
        }

        var uts = utsname()
        uname(&uts)
        let kernel = withUnsafeBytes(of: &uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let os =
            ((try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)) ?? "").split(separator: "\n")
            .first { $0.hasPrefix("PRETTY_NAME=") }.map {
                $0.dropFirst(12).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            } ?? "unknown"
        var record = EnvironmentRecord(
            hostname: ProcessInfo.processInfo.hostName, cpuModel: field("model name") ?? "unknown",
            cpuVendor: field("vendor_id") ?? "unknown",
            cpuFlags: flags, logicalCPUs: ProcessInfo.processInfo.activeProcessorCount,
            memoryMiB: Int(ProcessInfo.processInfo.physicalMemory >> 20), kernel: kernel, operatingSystem: os,
            runningInVM: flags.contains("hypervisor"), kvm: kvm, tscKHz: TSC.calibratedKilohertz,
            numaAvailable: NUMAPlacement.isAvailable,
            numaNodes: nodes, numaNodeUsed: numaNodeUsed, qemuVersion: qemuVersion, guestImageHash: guestImageHash)
        record.pinnedCPUs = pinnedCPUs.map { $0.map { PinnedCPU(cpu: $0, node: NUMAPlacement.node(ofCPU: $0)) } }
        return record
    }

    private static func readTrimmed(_ path: String) -> String? {
        (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
