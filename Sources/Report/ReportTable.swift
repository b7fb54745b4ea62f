/// A section of a report that is one table: a title, column headers, rows of cells and a
/// legend, written as Markdown (a `###` heading) or as an HTML `<section>`.
struct ReportTable {
    /// A cell: plain text, or a benchmark id shown as code.
    enum Cell {
        case text(String)
        case code(String)

        var markdown: String {
            switch self {
            case .text(let text): return text
            case .code(let text): return "`\(text)`"
            }
        }

        var html: String {
            switch self {
            case .text(let text): return escapeXML(text)
            case .code(let text): return "<code>\(escapeXML(text))</code>"
            }
        }
    }

    let id: String
    let title: String
    let headers: [String]
    let rows: [[Cell]]
    let legend: String

    var markdown: String {
        guard !rows.isEmpty else { return "" }
        var text = "\n### \(title)\n\n| " + headers.joined(separator: " | ") + " |\n"
        text += "|" + String(repeating: "---|", count: headers.count) + "\n"
        for row in rows { text += "| " + row.map(\.markdown).joined(separator: " | ") + " |\n" }
        return text + "\n\(legend)\n"
    }

    var html: String {
        guard !rows.isEmpty else { return "" }
        var html = "<section id=\"\(id)\"><h2>\(escapeXML(title))</h2><table><thead><tr>"
        html += headers.map { "<th>\(escapeXML($0))</th>" }.joined() + "</tr></thead><tbody>"
        for row in rows { html += "<tr>" + row.map { "<td>\($0.html)</td>" }.joined() + "</tr>" }
        return html + "</tbody></table><p class=\"hint\">\(escapeXML(legend))</p></section>\n"
    }
}
