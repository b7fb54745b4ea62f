import ArgumentParser
import Bench
import Results
import Foundation
import Report

struct ClaimsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "claims",
        abstract: "Judge the published claims in Workloads/claims against a run.",
        discussion: """
            Each claim gets a verdict with its evidence: reproduced (the whole 95% CI satisfies the claim),
            not reproduced (the whole CI violates it), inconclusive (the CI straddles the bound) or
            insufficient data (the run lacks a system or benchmark the claim needs).
            """)

    @Argument(help: "A results.json, a run folder, or store:REF (an id, latest, latest~N; HOST/ before it for one host).")
    var results: String

    @OptionGroup var storeOptions: StoreOptions

    @Option(help: "A claims folder or file instead of Workloads/claims.")
    var claims: String?

    func run() async throws {
        do {
            let run = try await RunReference.load(results, store: storeOptions)
            let loaded: [Claim]
            if let claims {
                var isDirectory: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: claims, isDirectory: &isDirectory)
                loaded =
                    isDirectory.boolValue
                    ? try Claim.loadAll(
                        in: Workspace(root: URL(fileURLWithPath: claims).deletingLastPathComponent().deletingLastPathComponent()))
                    : [try Claim.load(from: URL(fileURLWithPath: claims))]
            } else {
                loaded = try Claim.loadAll(in: try Workspace.locate())
            }
            print(ClaimsOutput.terminal(loaded.map { $0.evaluate(run) }))
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
    }
}
