import Foundation

/// Where `hvbench baseline` keeps a host's baselines: `Results/baselines/<host-id>/`, with
/// `<name>.json` and the calibrated `thresholds.yaml` beside it. The host id is the hostname and
/// the KVM module, so a host whose virtualization changes gets a baseline of its own.
public enum BaselineStore {
    public static func hostID(_ environment: EnvironmentRecord) -> String {
        let raw = "\(environment.hostname)-\(environment.kvm.module)"
        return String(raw.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
    }

    public static func folder(for environment: EnvironmentRecord, in workspace: Workspace) -> URL {
        workspace.results.appendingPathComponent("baselines/\(hostID(environment))")
    }

    public static func thresholds(in folder: URL) -> URL { folder.appendingPathComponent("thresholds.yaml") }
}
