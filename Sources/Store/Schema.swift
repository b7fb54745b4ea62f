/// The store's schema: results.json as tables (hosts, runs, systems, benchmarks, results,
/// metrics with their per-round values and samples, and each run's schedule of rounds), plus the
/// whole document of each run, so that every command reads a stored run exactly as it read the
/// file. Versioned: each migration is applied once, in order, and recorded in `hvbench_schema`;
/// a store whose version is newer than this hvbench knows is refused, never written.
enum Schema {
    /// Templates rendered per dialect ({serial}, {real}); every migration's statements run in one transaction.
    static let migrations: [[String]] = [
        // 1: the results.
        [
            """
            CREATE TABLE hosts (id TEXT PRIMARY KEY, hostname TEXT NOT NULL, cpu_model TEXT NOT NULL,
              kvm_module TEXT NOT NULL, logical_cpus INTEGER NOT NULL, kernel TEXT NOT NULL)
            """,
            """
            CREATE TABLE runs (id {serial}, run_key TEXT NOT NULL UNIQUE, content_hash TEXT NOT NULL,
              host_id TEXT NOT NULL REFERENCES hosts(id), started_at TEXT NOT NULL, suite TEXT,
              tool_version TEXT NOT NULL, git_commit TEXT, rounds INTEGER, seed TEXT, injected_slowdown INTEGER,
              source TEXT, recorded_at TEXT NOT NULL, document TEXT NOT NULL)
            """,
            "CREATE INDEX runs_by_host ON runs (host_id, started_at)",
            "CREATE TABLE systems (name TEXT PRIMARY KEY)",
            "CREATE TABLE benchmarks (name TEXT PRIMARY KEY)",
            """
            CREATE TABLE results (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
              system TEXT NOT NULL REFERENCES systems(name), benchmark TEXT NOT NULL REFERENCES benchmarks(name),
              status TEXT NOT NULL, reason TEXT, PRIMARY KEY (run_id, system, benchmark))
            """,
            """
            CREATE TABLE metrics (run_id INTEGER NOT NULL, system TEXT NOT NULL, benchmark TEXT NOT NULL,
              name TEXT NOT NULL, unit TEXT NOT NULL, better TEXT NOT NULL, median {real}, ci_low {real},
              ci_high {real}, noisy INTEGER NOT NULL, percent_of_native {real},
              PRIMARY KEY (run_id, system, benchmark, name),
              FOREIGN KEY (run_id, system, benchmark) REFERENCES results(run_id, system, benchmark) ON DELETE CASCADE)
            """,
            "CREATE INDEX metrics_by_series ON metrics (system, benchmark, name)",
            """
            CREATE TABLE samples (run_id INTEGER NOT NULL, system TEXT NOT NULL, benchmark TEXT NOT NULL,
              metric TEXT NOT NULL, position INTEGER NOT NULL, value {real} NOT NULL,
              PRIMARY KEY (run_id, system, benchmark, metric, position),
              FOREIGN KEY (run_id, system, benchmark, metric) REFERENCES metrics(run_id, system, benchmark, name)
                ON DELETE CASCADE)
            """,
            """
            CREATE TABLE rounds (run_id INTEGER NOT NULL, system TEXT NOT NULL, benchmark TEXT NOT NULL,
              metric TEXT NOT NULL, round INTEGER NOT NULL, value {real} NOT NULL,
              PRIMARY KEY (run_id, system, benchmark, metric, round),
              FOREIGN KEY (run_id, system, benchmark, metric) REFERENCES metrics(run_id, system, benchmark, name)
                ON DELETE CASCADE)
            """,
            """
            CREATE TABLE schedule (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
              position INTEGER NOT NULL, round INTEGER NOT NULL, system TEXT NOT NULL, benchmark TEXT NOT NULL,
              PRIMARY KEY (run_id, position))
            """,
        ],
        // 2: named baselines per host (`hvbench baseline save --store`).
        [
            """
            CREATE TABLE baselines (host_id TEXT NOT NULL REFERENCES hosts(id), name TEXT NOT NULL,
              run_id INTEGER NOT NULL REFERENCES runs(id), saved_at TEXT NOT NULL, PRIMARY KEY (host_id, name))
            """
        ],
    ]

    static var version: Int { migrations.count }
}
