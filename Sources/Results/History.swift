/// A folder of runs over time, as series per metric, with their change points: what
/// `hvbench history` draws and what `hvbench history --check` gates on.
public struct History: Sendable {
    /// One metric of one (system, benchmark) over the runs that measured it.
    public struct Series: Sendable {
        public let system: String
        public let benchmark: String
        public let metric: String
        public let unit: String
        public let better: Better
        /// Index into `History.runs` of each point.
        public let runIndices: [Int]
        public let medians: [Double]
        public let lows: [Double]
        public let highs: [Double]
        public let changePoints: [ChangePoints.ChangePoint]

        public var key: String { "\(system) \(benchmark) \(metric)" }

        /// A change is worse when the metric moved against its better direction.
        public func isWorse(_ change: ChangePoints.ChangePoint) -> Bool {
            better == .lower ? change.changePercent > 0 : change.changePercent < 0
        }
    }

    /// A change point that fails `--check`: significant, worse, larger than its threshold, and
    /// starting at one of the newest runs.
    public struct Alarm: Sendable {
        public let series: Series
        public let change: ChangePoints.ChangePoint
        public let runLabel: String
        public let thresholdPercent: Double
    }

    public let runLabels: [String]
    public let series: [Series]

    /// `runs` oldest first.
    public init(_ runs: [RunResults], significance: Double = 0.05) {
        runLabels = runs.map { run in
            String(run.startedAt.prefix(16)) + (run.tool.gitCommit.map { " " + String($0.prefix(7)) } ?? "")
        }
        struct Builder {
            var unit: String
            var better: Better
            var indices: [Int] = []
            var medians: [Double] = []
            var lows: [Double] = []
            var highs: [Double] = []
        }
        var builders: [String: Builder] = [:]
        var order: [(String, String, String)] = []
        for (index, run) in runs.enumerated() {
            for result in run.results where result.status == .ok {
                for metric in result.metrics {
                    let key = "\(result.system) \(result.benchmark) \(metric.name)"
                    if builders[key] == nil {
                        builders[key] = Builder(unit: metric.unit, better: metric.better)
                        order.append((result.system, result.benchmark, metric.name))
                    }
                    builders[key]?.indices.append(index)
                    builders[key]?.medians.append(metric.summary.median)
                    builders[key]?.lows.append(metric.summary.ci95Low)
                    builders[key]?.highs.append(metric.summary.ci95High)
                }
            }
        }
        series = order.map { system, benchmark, metric in
            let builder = builders["\(system) \(benchmark) \(metric)"]!
            return Series(
                system: system, benchmark: benchmark, metric: metric, unit: builder.unit, better: builder.better,
                runIndices: builder.indices, medians: builder.medians, lows: builder.lows, highs: builder.highs,
                changePoints: ChangePoints.detect(builder.medians, significance: significance))
        }
    }

    /// Worse changes beyond their threshold that start within the newest `window` runs.
    public func alarms(window: Int, thresholds: ThresholdPolicy) -> [Alarm] {
        let newest = runLabels.count - window
        return series.flatMap { series in
            series.changePoints.compactMap { change in
                let run = series.runIndices[change.index]
                let threshold = thresholds.percent(benchmark: series.benchmark, metric: series.metric)
                guard run >= newest, series.isWorse(change), abs(change.changePercent) > threshold else { return nil }
                return Alarm(series: series, change: change, runLabel: runLabels[run], thresholdPercent: threshold)
            }
        }
    }

    /// Across a fleet: each series that raised an alarm on more than one host, with those hosts
    /// (sorted) — the same regression on several hosts at once is a change in the software, not
    /// one host's drift.
    public static func sharedAlarms(_ alarmsByHost: [(host: String, alarms: [Alarm])]) -> [(series: String, hosts: [String])] {
        var hosts: [String: Set<String>] = [:]
        for (host, alarms) in alarmsByHost {
            for alarm in alarms { hosts[alarm.series.key, default: []].insert(host) }
        }
        return hosts.filter { $0.value.count > 1 }.sorted { $0.key < $1.key }.map { ($0.key, $0.value.sorted()) }
    }
}
