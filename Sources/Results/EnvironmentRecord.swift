import Foundation

/// What the results were measured on. `hvbench env` prints it; every results file carries it.
public struct EnvironmentRecord: Codable, Sendable {
    public struct KVMInfo: Codable, Sendable {
        /// "kvm_intel", "kvm_amd", "kvm_pvm" or "none".
        public var module: String
        public var devicePresent: Bool
        public var usable: Bool
        public var unavailableReason: String?
        /// The CPU advertises vmx or svm to this host.
        public var hardwareVirtualization: Bool
        /// KVM without VT-x/AMD-V (kvm_pvm): guest CPL0 code is emulated by the host kernel.
        public var softwareAssisted: Bool
        /// For kvm_intel/kvm_amd: whether the module lets guests use nested virtualization.
        public var nestedParameter: String?
        public var tscKHz: Int?
        /// The paravirtual CPU features the host's KVM offers (CPUID 0x40000001), by name; nil
        /// where KVM is unusable or the record predates the field.
        public var paravirtualFeatures: [String]?

        public init(
            module: String, devicePresent: Bool, usable: Bool, unavailableReason: String?, hardwareVirtualization: Bool,
            softwareAssisted: Bool, nestedParameter: String?, tscKHz: Int?
        ) {
            self.module = module
            self.devicePresent = devicePresent
            self.usable = usable
            self.unavailableReason = unavailableReason
            self.hardwareVirtualization = hardwareVirtualization
            self.softwareAssisted = softwareAssisted
            self.nestedParameter = nestedParameter
            self.tscKHz = tscKHz
        }
    }

    public struct NUMANode: Codable, Sendable {
        public var id: Int
        public var memoryMiB: Int
        public var cpus: [Int]

        public init(id: Int, memoryMiB: Int, cpus: [Int]) {
            self.id = id
            self.memoryMiB = memoryMiB
            self.cpus = cpus
        }
    }

    public var hostname: String
    public var cpuModel: String
    public var cpuVendor: String
    public var cpuFlags: [String]
    public var logicalCPUs: Int
    public var memoryMiB: Int
    public var kernel: String
    public var operatingSystem: String
    /// This host is itself a virtual machine (the cpuid "hypervisor" bit is set).
    public var runningInVM: Bool
    public var kvm: KVMInfo
    /// Host TSC frequency calibrated against CLOCK_MONOTONIC.
    public var tscKHz: Int
    public var numaAvailable: Bool
    public var numaNodes: [NUMANode]
    public var numaNodeUsed: Int?
    /// `--pin`: the host CPUs hvbench's vCPU threads and the native runs were pinned to, each
    /// with its NUMA node where known; nil when nothing was pinned (and in older files).
    public var pinnedCPUs: [PinnedCPU]?
    public var qemuVersion: String?
    public var guestImageHash: String?

    public init(
        hostname: String, cpuModel: String, cpuVendor: String, cpuFlags: [String], logicalCPUs: Int, memoryMiB: Int,
        kernel: String, operatingSystem: String, runningInVM: Bool, kvm: KVMInfo, tscKHz: Int, numaAvailable: Bool,
        numaNodes: [NUMANode], numaNodeUsed: Int?, qemuVersion: String?, guestImageHash: String?
    ) {
        self.hostname = hostname
        self.cpuModel = cpuModel
        self.cpuVendor = cpuVendor
        self.cpuFlags = cpuFlags
        self.logicalCPUs = logicalCPUs
        self.memoryMiB = memoryMiB
        self.kernel = kernel
        self.operatingSystem = operatingSystem
        self.runningInVM = runningInVM
        self.kvm = kvm
        self.tscKHz = tscKHz
        self.numaAvailable = numaAvailable
        self.numaNodes = numaNodes
        self.numaNodeUsed = numaNodeUsed
        self.qemuVersion = qemuVersion
        self.guestImageHash = guestImageHash
    }

    /// The sentence every report shows about what "hardware-assist" means on this host.
    public var virtualizationNote: String {
        if !kvm.usable {
            return "KVM is not usable here (\(kvm.unavailableReason ?? "unknown reason")): hardware-assist results are skipped."
        }
        if kvm.softwareAssisted {
            return
                "KVM here is software-assisted (\(kvm.module), no VT-x/AMD-V): guest CPL0 code is emulated by the host kernel; the guest runs its benchmarks at CPL3, where it runs near native, but every exit costs microseconds."
        }
        return "KVM with hardware virtualization (\(kvm.module))\(runningInVM ? ", nested inside another hypervisor" : "")."
    }
}

/// One host CPU threads were pinned to, with its NUMA node where libnuma knows it.
public struct PinnedCPU: Equatable, Sendable, Codable {
    public var cpu: Int
    public var node: Int?

    public init(cpu: Int, node: Int?) {
        self.cpu = cpu
        self.node = node
    }
}
