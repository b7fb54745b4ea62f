/// Rounds are the unit of replication: a run is R rounds, and in each round every (system,
/// benchmark) pair runs once — a fresh VM or process — in an order shuffled per round from a
/// recorded seed (Abedi & Brecht's randomized multiple interleaved trials). Drift between time
/// blocks, the dominant noise on shared hosts, then falls on every system alike and shows up in
/// the spread across rounds instead of hiding inside one block.
public struct Schedule: Codable, Sendable, Equatable {
    public struct Slot: Codable, Sendable, Equatable {
        public var round: Int
        public var system: String
        public var benchmark: String

        public init(round: Int, system: String, benchmark: String) {
            self.round = round
            self.system = system
            self.benchmark = benchmark
        }
    }

    public var rounds: Int
    public var seed: UInt64
    /// Every (round, system, benchmark) in the order it ran.
    public var order: [Slot]

    public init(rounds: Int, seed: UInt64, order: [Slot] = []) {
        self.rounds = rounds
        self.seed = seed
        self.order = order
    }

    /// The order of `count` tasks in `round`: shuffled from the seed when there are several
    /// rounds, the listed order for a single one.
    public func permutation(round: Int, count: Int) -> [Int] {
        rounds > 1 ? Self.shuffled(count: count, round: round, seed: seed) : Array(0..<count)
    }

    /// 0..<count in the order `seed` gives `round`: the same seed and round, the same order.
    public static func shuffled(count: Int, round: Int, seed: UInt64) -> [Int] {
        var order = Array(0..<count)
        var generator = SplitMix64(seed: seed &+ UInt64(round) &* 0x9E37_79B9_7F4A_7C15)
        order.shuffle(using: &generator)
        return order
    }
}

extension BenchmarkResult {
    /// One result from the same pair's results of every round. A failure in any round fails the
    /// pair (its samples are not mixed with the others); a skip skips it. Otherwise repetitions
    /// are kept, each metric gains its per-round medians, and its summary is across rounds.
    public static func combining(rounds results: [BenchmarkResult]) -> BenchmarkResult {
        guard var combined = results.first else { preconditionFailure("a pair runs at least one round") }
        guard results.count > 1 else { return combined }
        if let (round, failed) = results.enumerated().first(where: { $0.element.status == .failed }) {
            var result = failed
            result.reason = "round \(round + 1): \(failed.reason ?? "failed")"
            result.metrics = []
            return result
        }
        if let skipped = results.first(where: { $0.status == .skipped }) { return skipped }
        combined.metrics = combined.metrics.indices.map { index in
            let metric = combined.metrics[index]
            let perRound = results.compactMap { $0.metrics.indices.contains(index) ? $0.metrics[index] : nil }
            var merged = Metric(
                MetricSamples(
                    name: metric.name, unit: metric.unit, better: metric.better, values: perRound.flatMap(\.samples)),
                roundValues: perRound.map(\.summary.median))
            // Operation percentiles: the median of each round's figure.
            func middle(_ values: [Double?]) -> Double? {
                let known = values.compactMap { $0 }.sorted()
                return known.isEmpty ? nil : Summary.quantile(known, 0.5)
            }
            merged.summary.p50 = middle(perRound.map(\.summary.p50))
            merged.summary.p90 = middle(perRound.map(\.summary.p90))
            merged.summary.p99 = middle(perRound.map(\.summary.p99))
            merged.summary.p999 = middle(perRound.map(\.summary.p999))
            let operations = perRound.compactMap(\.summary.latencyOperations)
            merged.summary.latencyOperations = operations.isEmpty ? nil : operations.reduce(0, +)
            return merged
        }
        combined.repetitions = combined.metrics.first?.samples.count ?? combined.repetitions
        combined.rounds = results.map { $0.rounds ?? 1 }.reduce(0, +)
        combined.wallSeconds = results.compactMap(\.wallSeconds).reduce(0, +)
        let exits = results.compactMap(\.exits)
        if exits.count == results.count {
            combined.exits = exits.dropFirst().reduce(into: exits[0]) { $0.add($1) }
        }
        let interrupts = results.compactMap(\.guestInterrupts)
        if interrupts.count == results.count {
            combined.guestInterrupts = interrupts.dropFirst().reduce(into: interrupts[0]) { $0.add($1) }
        }
        if results.contains(where: { $0.ciTargetMet != nil }) {
            combined.ciTargetMet = results.allSatisfy { $0.ciTargetMet == true }
        }
        return combined
    }
}
