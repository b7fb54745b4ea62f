import Foundation
import Machine

/// The far end of the Linux guest's iperf3 jobs: Debian's iperf3 as a server in the run's own
/// network namespace, bound to the host peer's address, from before the guest (or the native
/// run) starts until the measurement ends.
final class IPerf3Server: Sendable {
    private let run: Task<Result<ProcessRunner.Output, Error>, Never>
    private let stopRequest: HostStopRequest

    private init(run: Task<Result<ProcessRunner.Output, Error>, Never>, stopRequest: HostStopRequest) {
        self.run = run
        self.stopRequest = stopRequest
    }

    /// Starts the server inside `link`'s namespace and waits (up to 10 s) until it listens.
    static func start(in link: TAPLink, timeout: Double) async -> Result<IPerf3Server, BenchmarkRunner.StartProblem> {
        guard let iperf3 = ProcessRunner.find("iperf3"), let nsenter = ProcessRunner.find("nsenter") else {
            return .failure(.init(description: "the iperf3 server needs iperf3 and nsenter on the host"))
        }
        let listening = FirstLineClock()
        let stopRequest = HostStopRequest()
        let arguments =
            Array(link.namespace.enterCommand.dropFirst())
            + [
                iperf3, "--server", "--bind", "\(TAPLink.hostAddress)", "--port", "\(LinuxWorkloadMeasurement.iperf3Port)",
                "--forceflush",
            ]
        let run = Task { () -> Result<ProcessRunner.Output, Error> in
            do {
                return .success(
                    try await ProcessRunner.run(nsenter, arguments, timeout: timeout, stop: stopRequest) { line in
                        if line.contains("Server listening") { listening.mark() }
                    })
            } catch { return .failure(error) }
        }
        let server = IPerf3Server(run: run, stopRequest: stopRequest)
        let deadline = ContinuousClock.now + .seconds(10)
        while listening.nanoseconds == nil && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if listening.nanoseconds == nil {
            let log = await server.stop()
            return .failure(.init(description: "the iperf3 server did not start listening within 10 s: \(log.suffix(300))"))
        }
        return .success(server)
    }

    /// Stops the server and returns its output, for the log.
    func stop() async -> String {
        stopRequest.request()
        switch await run.value {
        case .success(let output):
            return (output.standardOutput + [output.standardError, "# \(output.statusDescription)"]).joined(separator: "\n")
        case .failure(let error): return "iperf3 server: \(error)"
        }
    }
}
