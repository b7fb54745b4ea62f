import ArgumentParser
import Bench
import Foundation
import KVM
import Machine

struct BootCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Boot any PVH or Multiboot v1 kernel under hvbench's VMM, console on stdout.",
        discussion: """
            A kernel built for `qemu-system-x86_64 -kernel K -device isa-debug-exit,iobase=0xf4 -serial stdio`
            runs unchanged. Exit status: the guest's port-0xF4 status ((value << 1) | 1), 0 when the guest
            halts, 124 when the watchdog stops it, 125 when the VM fails (triple fault, KVM error).
            """)

    @Argument(help: "Kernel image: an ELF with a PVH entry note, or a Multiboot v1 kernel.")
    var kernel: String

    @Option(help: "Kernel command line.")
    var cmdline: String = ""

    @Option(help: "Guest RAM in MiB.")
    var memory: Int = 256

    @Option(help: "Seconds before the watchdog stops the guest.")
    var timeout: Double = 60

    @Option(help: "CPU engine: kvm.")
    var cpu: String = "kvm"

    func validate() throws {
        guard VMLauncher.memoryRangeMiB.contains(memory) else {
            throw ValidationError(
                "--memory must be between \(VMLauncher.memoryRangeMiB.lowerBound) and \(VMLauncher.memoryRangeMiB.upperBound) MiB"
            )
        }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        guard cpu == "kvm" else { throw ValidationError("unknown --cpu '\(cpu)': this build has the kvm engine only") }
    }

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: kernel) else {
            printError("cannot read kernel '\(kernel)'")
            throw ExitCode(2)
        }
        let boot: VMLauncher.Boot
        do {
            let kvm = try KVMSystem()
            boot = try VMLauncher.boot(
                kernel: [UInt8](data), commandLine: cmdline, memoryMiB: memory, timeout: timeout, echoConsole: true, kvm: kvm)
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        switch boot.outcome.ending {
        case .exitDevice(let status):
            throw ExitCode(status)
        case .halted:
            printError(boot.outcome.ending.summary)
        case .timedOut:
            printError(boot.outcome.ending.summary)
            throw ExitCode(124)
        case .shutdown, .failed:
            printError(boot.outcome.ending.summary)
            throw ExitCode(125)
        }
    }
}
