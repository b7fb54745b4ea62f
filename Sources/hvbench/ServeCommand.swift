import ArgumentParser
import Dashboard
import Foundation
import Results
import Store

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the dashboard: per host, every benchmark's trend over the stored runs, change points marked.",
        discussion: """
            Pages: / (the hosts), /hosts/HOST (trends, latest % of native, regressions within the newest runs,
            each point linking to its run), /runs/ID (the run's report). Binds 127.0.0.1 unless --address says
            otherwise. Stops on Ctrl-C.
            """)

    @OptionGroup var storeOptions: StoreOptions

    @Option(help: "Address to listen on.")
    var address: String = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port, printed).")
    var port: Int = 8080

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
    }

    func run() async throws {
        let location: ResultsStore.Location
        do {
            location = try storeOptions.location()
            // Fail now, not on the first request, when the store cannot be opened.
            try await ResultsStore.open(location).close()
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
        try await DashboardServer.serve(store: location, host: address, port: port) { bound in
            // Unbuffered: whoever started the server waits for this line.
            FileHandle.standardOutput.write(Data("serving \(location) at http://\(address):\(bound)/\n".utf8))
        }
    }
}
