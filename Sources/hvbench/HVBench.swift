import ArgumentParser
import Bench
import Results
import Foundation

@main
struct HVBench: AsyncParsableCommand {
    static let version = "0.1.0"
    static let configuration = CommandConfiguration(
        commandName: "hvbench",
        abstract:
            "Compare virtualization techniques: boot a benchmark guest under hvbench's own VMM and measure it against native.",
        discussion: """
            Modes: hardware-assist (KVM + emulated e1000/IDE), paravirt-io (KVM + virtio-net/blk), full-emulation
            (hvbench's x86-64 interpreter + e1000/IDE), native (the host).
            Start with:  hvbench run --suite quick
            """,
        version: version,
        subcommands: [
            RunCommand.self, ListCommand.self, EnvCommand.self, BootCommand.self, ReportCommand.self, CompareCommand.self,
            ABCommand.self, BaselineCommand.self, ClaimsCommand.self, HistoryCommand.self, SelftestCommand.self,
            MipsCommand.self, DensityCommand.self, StoreCommand.self, ServeCommand.self, ExportCommand.self, ABRatesCommand.self,
        ]
    )

    /// As ArgumentParser's own entry point, except that bad input (an unknown option, a value out
    /// of range) exits with status 2, hvbench's documented status for bad input, instead of 64.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// Errors the CLI reports as one clear line and a non-zero exit status.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func toolInfo(_ workspace: Workspace) async -> ToolInfo {
    var commit: String?
    if let git = ProcessRunner.find("git"),
        let output = try? await ProcessRunner.run(git, ["-C", workspace.root.path, "rev-parse", "HEAD"], timeout: 10),
        output.succeeded
    {
        commit = output.standardOutput.first
    }
    return ToolInfo(version: HVBench.version, gitCommit: commit)
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data("hvbench: \(message)\n".utf8))
}
