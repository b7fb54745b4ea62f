import Foundation
import Results

/// A run as rows: what recording it writes, pure (no database), so both backends write the same.
struct RunRows {
    /// Host, systems and benchmarks: shared rows, inserted when new.
    var prelude: [SQLStatement] = []
    /// The run's own row, inserted unless a run with the same key is there (then nothing is written).
    var claim: SQLStatement
    /// Results, metrics, per-round values, samples and the schedule, keyed by the claimed id.
    var rest: [SQLStatement] = []

    /// What makes a run the same run: where it ran, when it started, its suite and seed. The
    /// content hash tells a re-recorded copy (nothing to do) from a different run under the same
    /// key (refused).
    static func key(_ run: RunResults, host: String) -> String {
        [host, run.startedAt, run.suite ?? "-", run.schedule.map { String($0.seed) } ?? "-", run.tool.gitCommit ?? "-"]
            .joined(separator: "|")
    }

    /// FNV-1a 64 of the document (the hash the guest image already uses).
    static func contentHash(_ data: Data) -> String {
        var hash = FNV1a64()
        hash.add(data)
        return "fnv1a64:" + hash.hex
    }

    init(run: RunResults, host: String, source: String?, recordedAt: Date = Date()) throws {
        let document = try run.encoded()
        let environment = run.environment
        let insertHost =
            "INSERT INTO hosts (id, hostname, cpu_model, kvm_module, logical_cpus, kernel) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
        prelude.append(
            SQLStatement(
                insertHost,
                [
                    .text(host), .text(environment.hostname), .text(environment.cpuModel), .text(environment.kvm.module),
                    .integer(Int64(environment.logicalCPUs)), .text(environment.kernel),
                ]))
        for system in Set(run.results.map(\.system)).sorted() {
            prelude.append(SQLStatement("INSERT INTO systems (name) VALUES (?) ON CONFLICT (name) DO NOTHING", [.text(system)]))
        }
        for benchmark in Set(run.results.map(\.benchmark)).sorted() {
            prelude.append(
                SQLStatement("INSERT INTO benchmarks (name) VALUES (?) ON CONFLICT (name) DO NOTHING", [.text(benchmark)]))
        }
        claim = SQLStatement(
            """
            INSERT INTO runs (run_key, content_hash, host_id, started_at, suite, tool_version, git_commit, rounds, seed,
              injected_slowdown, source, recorded_at, document)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_key) DO NOTHING RETURNING id
            """,
            [
                .text(Self.key(run, host: host)), .text(Self.contentHash(document)), .text(host), .text(run.startedAt),
                run.suite.map(SQLValue.text) ?? .null, .text(run.tool.version), run.tool.gitCommit.map(SQLValue.text) ?? .null,
                run.schedule.map { .integer(Int64($0.rounds)) } ?? .null, run.schedule.map { .text(String($0.seed)) } ?? .null,
                run.injectedSlowdownPercent.map { .integer(Int64($0)) } ?? .null, source.map(SQLValue.text) ?? .null,
                .text(ISO8601DateFormatter().string(from: recordedAt)), .text(String(decoding: document, as: UTF8.self)),
            ])
        var seen = Set<String>()
        for result in run.results where seen.insert("\(result.system)|\(result.benchmark)").inserted {
            let resultKey: [SQLValue] = [.claimedID, .text(result.system), .text(result.benchmark)]
            rest.append(
                SQLStatement(
                    "INSERT INTO results (run_id, system, benchmark, status, reason) VALUES (?, ?, ?, ?, ?)",
                    resultKey + [.text(result.status.rawValue), result.reason.map(SQLValue.text) ?? .null]))
            var metricNames = Set<String>()
            for metric in result.metrics where metricNames.insert(metric.name).inserted {
                let percent = run.percentOfNative(system: result.system, benchmark: result.benchmark, metric: metric)
                rest.append(
                    SQLStatement(
                        """
                        INSERT INTO metrics (run_id, system, benchmark, name, unit, better, median, ci_low, ci_high, noisy,
                          percent_of_native) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                        resultKey + [
                            .text(metric.name), .text(metric.unit), .text(metric.better.rawValue),
                            Self.number(metric.summary.median), Self.number(metric.summary.ci95Low),
                            Self.number(metric.summary.ci95High), .integer(metric.summary.noisy ? 1 : 0),
                            percent.map(Self.number) ?? .null,
                        ]))
                let metricKey = resultKey + [.text(metric.name)]
                for (position, value) in metric.samples.enumerated() where value.isFinite {
                    rest.append(
                        SQLStatement(
                            "INSERT INTO samples (run_id, system, benchmark, metric, position, value) VALUES (?, ?, ?, ?, ?, ?)",
                            metricKey + [.integer(Int64(position)), .real(value)]))
                }
                for (round, value) in (metric.roundValues ?? []).enumerated() where value.isFinite {
                    rest.append(
                        SQLStatement(
                            "INSERT INTO rounds (run_id, system, benchmark, metric, round, value) VALUES (?, ?, ?, ?, ?, ?)",
                            metricKey + [.integer(Int64(round + 1)), .real(value)]))
                }
            }
        }
        for (position, slot) in (run.schedule?.order ?? []).enumerated() {
            rest.append(
                SQLStatement(
                    "INSERT INTO schedule (run_id, position, round, system, benchmark) VALUES (?, ?, ?, ?, ?)",
                    [
                        .claimedID, .integer(Int64(position)), .integer(Int64(slot.round)), .text(slot.system),
                        .text(slot.benchmark),
                    ]
                ))
        }
    }

    /// Non-finite figures (a metric with no spread) are stored as NULL: SQL has no literal for them.
    static func number(_ value: Double) -> SQLValue { value.isFinite ? .real(value) : .null }
}
