import Results
import Foundation

/// Claim verdicts on the terminal, in summary.md and in report.html.
public enum ClaimsOutput {
    static func source(_ claim: Claim) -> String {
        let s = claim.source
        return [s.authors, "\"\(s.title)\"", s.venue, s.vendor, String(s.year)].compactMap { $0 }.joined(separator: ", ")
    }

    public static func terminal(_ verdicts: [ClaimVerdict]) -> String {
        verdicts.map { verdict in
            """
            [\(verdict.outcome.rawValue.uppercased())] \(verdict.claim.id)
              claim:    \(verdict.claim.claim)
              source:   \(source(verdict.claim))
              evidence: \(verdict.evidence)
            """
        }.joined(separator: "\n\n")
    }

    public static func markdown(_ verdicts: [ClaimVerdict]) -> String {
        guard !verdicts.isEmpty else { return "" }
        var text = "\n### Published claims\n\n| verdict | claim | source | evidence |\n|---|---|---|---|\n"
        for verdict in verdicts {
            text +=
                "| **\(verdict.outcome.rawValue)** | \(verdict.claim.claim) | \(source(verdict.claim)) | \(verdict.evidence) |\n"
        }
        return text
    }

    public static func html(_ verdicts: [ClaimVerdict]) -> String {
        guard !verdicts.isEmpty else { return "" }
        var html =
            "<section id=\"claims\"><h2>Published claims</h2><table><thead><tr><th>verdict</th><th>claim</th><th>source</th><th>evidence</th></tr></thead><tbody>"
        for verdict in verdicts {
            let cls = verdict.outcome == .reproduced ? "ok" : verdict.outcome == .notReproduced ? "failed" : "noisy"
            html += "<tr><td class=\"\(cls)\"><b>\(escapeXML(verdict.outcome.rawValue))</b></td>"
            html +=
                "<td>\(escapeXML(verdict.claim.claim))\(verdict.claim.interpretation.map { "<br><span class=\"hint\">\(escapeXML($0))</span>" } ?? "")</td>"
            html += "<td>\(escapeXML(source(verdict.claim)))</td><td>\(escapeXML(verdict.evidence))</td></tr>"
        }
        return html
            + "</tbody></table><p class=\"hint\">Reproduced: the whole 95% CI satisfies the claim; not reproduced: the whole CI violates it; inconclusive: the CI straddles the bound.</p></section>\n"
    }
}
