import ArgumentParser
import Machine
import Results
import Bench
import X86

/// `--cpu`: the VM's CPU engine.
enum CPUChoice: String, ExpressibleByArgument, CaseIterable {
    case kvm, emulator
}

/// `--io` of `hvbench run`: the devices a VM gives the guest.
extension SystemDefinition.Devices: ExpressibleByArgument {}

/// `--io` of `hvbench boot`, which may boot a kernel with no devices at all.
enum BootDeviceChoice: String, ExpressibleByArgument, CaseIterable {
    case none, legacy, virtio
}

extension NetworkPeer.Mode: ExpressibleByArgument {}

/// `--emulator` of `hvbench run`: how emulator systems run guest code.
extension EmulatorKind: ExpressibleByArgument {}

/// `--emulator` of the self-tests and `hvbench mips`: one emulator or both.
enum EmulatorSelection: String, ExpressibleByArgument, CaseIterable {
    case translate, interpret, both

    var kinds: [EmulatorKind] {
        switch self {
        case .translate: return [.translate]
        case .interpret: return [.interpret]
        case .both: return EmulatorKind.allCases
        }
    }
}

/// One `--mode` value: a system of the registry, several separated by commas, or `all`.
struct ModeSelection: ExpressibleByArgument {
    let systems: [SystemDefinition]
    /// Whether `native` was named (not only implied by `all`): with `--cpu`/`--io`, the axes
    /// replace the VM modes but a named native baseline stays.
    let namesNative: Bool
    /// As the user wrote it: what `--help` shows for the default ("all").
    let argument: String

    init?(argument: String) {
        self.argument = argument
        let words = argument.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        var systems: [SystemDefinition] = []
        for word in words {
            if word == "all" {
                systems += SystemRegistry.defaultModes
            } else if let system = SystemRegistry.named(word), !system.isPeer {
                systems.append(system)
            } else {
                return nil
            }
        }
        guard !systems.isEmpty else { return nil }
        self.systems = systems
        namesNative = words.contains { SystemRegistry.named($0)?.isBaseline == true }
    }

    static var allValueStrings: [String] { SystemRegistry.modes.map(\.name) + ["all"] }
    var defaultValueDescription: String { argument }
}
extension NetBackend: ExpressibleByArgument {}
