extension SystemDefinition {
    /// The workloads built for the host and run as a process: the baseline of "% of native".
    public static let native = SystemDefinition(
        name: "native", runner: .native, summary: "the host itself, no VM", colour: "#4c78a8", runByDefault: true)
}
