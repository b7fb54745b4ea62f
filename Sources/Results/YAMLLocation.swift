import Yams

/// Line numbers for YAML errors, so that a message about a suite, a claim or a thresholds file
/// names the line to fix: from the parser's mark, or by walking a decoding error's coding path
/// through the composed document.
enum YAMLLocation {
    /// The line a scanner, parser or composer error points at.
    static func line(of error: YamlError) -> Int? {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return nil
        }
    }

    /// The parser's own words, without the echo of the whole document.
    static func message(of error: YamlError) -> String {
        switch error {
        case .scanner(let context, let problem, _, _), .parser(let context, let problem, _, _),
            .composer(let context, let problem, _, _):
            return [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
        default: return "\(error)"
        }
    }

    /// The line of the deepest node on `path` that exists (the parent mapping of a missing key).
    static func line(of path: [any CodingKey], in root: Node) -> Int? {
        var node = root
        for key in path {
            if let index = key.intValue, let sequence = node.sequence, index < sequence.count {
                node = sequence[index]
            } else if let child = node.mapping?[key.stringValue] {
                node = child
            } else {
                break
            }
        }
        return node.mark?.line
    }

    /// Where a decoding error happened and what it says, in words.
    static func describe(_ error: DecodingError) -> (path: [any CodingKey], message: String) {
        func dotted(_ path: [any CodingKey]) -> String {
            path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = dotted(context.codingPath)
            return (context.codingPath, "missing key '\(key.stringValue)'" + (parent.isEmpty ? "" : " in \(parent)"))
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return (context.codingPath, "\(dotted(context.codingPath)): \(context.debugDescription)")
        @unknown default:
            return ([], "\(error)")
        }
    }
}
