import Foundation
import Hummingbird
import Logging
import Report
import Results
import Store

/// `hvbench serve`: the dashboard's pages over HTTP, read from the store on every request (a
/// fleet's hosts keep recording while it serves). Loopback by default.
public enum DashboardServer {
    /// Serves until SIGINT or SIGTERM. `ready` gets the bound port (port 0 picks a free one).
    public static func serve(
        store location: ResultsStore.Location, host address: String, port: Int,
        ready: @escaping @Sendable (Int) async -> Void
    ) async throws {
        let router = Router()
        router.get("/") { _, _ -> Response in
            try await page {
                try await ResultsStore.using(location) { store in
                    var hosts: [(host: String, runs: Int, latest: String?)] = []
                    for host in try await store.hosts() {
                        let runs = try await store.runs(host: host)
                        hosts.append((host, runs.count, runs.last?.startedAt))
                    }
                    return DashboardPages.index(hosts: hosts, store: "\(location)")
                }
            }
        }
        router.get("/hosts/:host") { _, context -> Response in
            let host = try context.parameters.require("host")
            return try await page {
                try await ResultsStore.using(location) { store in
                    var runs: [DashboardPages.Run] = []
                    for stored in try await store.runs(host: host) {
                        runs.append(DashboardPages.Run(id: stored.id, results: try await store.load(id: stored.id)))
                    }
                    guard !runs.isEmpty else { throw HTTPError(.notFound, message: "no runs of host \(host)") }
                    return DashboardPages.host(host, runs: runs)
                }
            }
        }
        router.get("/runs/:id") { _, context -> Response in
            let id = try context.parameters.require("id", as: Int64.self)
            return try await page {
                HTMLReport.render(try await ResultsStore.using(location) { try await $0.load(id: id) })
            }
        }
        var logger = Logger(label: "hvbench.serve")
        logger.logLevel = .warning
        let application = Application(
            router: router, configuration: .init(address: .hostname(address, port: port)),
            onServerRunning: { channel in await ready(channel.localAddress?.port ?? port) }, logger: logger)
        try await application.runService()
    }

    /// An HTML page, or the store's error as a 500 (a missing run or host as a 404).
    static func page(_ render: () async throws -> String) async throws -> Response {
        do {
            let html = try await render()
            return Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
        } catch let error as HTTPError {
            throw error
        } catch let error as StoreError where error.isMissing {
            throw HTTPError(.notFound, message: error.description)
        } catch {
            throw HTTPError(.internalServerError, message: "\(error)")
        }
    }
}
