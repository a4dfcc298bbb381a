import Foundation
import GRDB

/// One recording as a single self-contained HTML file: the dashboard's page, styles, scripts and
/// Chart.js inlined, and the recording's data embedded (so it opens anywhere, offline).
public enum Report {
    /// Rows of each table the report carries (the page links to the server for the rest).
    static let tableRows = 1000

    public static func html(store: ServerStore, recording r: ServerStore.Recording) throws -> String {
        guard let page = AnalysisServer.asset("index.html"), let app = AnalysisServer.asset("app.js"),
              let css = AnalysisServer.asset("style.css") else {
            throw ServerError("the dashboard's files are missing from this build's resources")
        }
        guard let chart = AnalysisServer.asset("vendor/chart.min.js") else {
            throw ServerError("Chart.js was not vendored into this build: run scripts/vendor-js.sh, then build again")
        }
        let e = try store.extent(recording: r.id)
        let from = e.fromNs ?? 0, to = e.toNs ?? from
        let encoder = JSONEncoder()
        func encoded<T: Encodable>(_ v: T) throws -> Any { try JSONSerialization.jsonObject(with: encoder.encode(v), options: [.fragmentsAllowed]) }
        var gadf: [String: String] = [:]
        for (name, series) in try store.featureSeries(recording: r.id, bins: 64) {
            gadf[name] = "data:image/bmp;base64," + Data(GADF.bmp(GADF.field(series))).base64EncodedString()
        }
        let data: [String: Any] = [
            "recording": try encoded(r),
            "timeline": try encoded(store.timeline(recording: r.id, fromNs: from, toNs: to, bins: 200)),
            "heatmap": try encoded(store.heatMap(recording: r.id, fromNs: from, toNs: to, timeBins: 120, lbaBins: 64)),
            "processes": try encoded(store.processes(recording: r.id)),
            "files": try encoded(store.changedFiles(recording: r.id)),
            "alerts": try encoded(store.alerts(recording: r.id, limit: tableRows)),
            "events": try store.events(recording: r.id, after: 0, limit: tableRows, ev: nil, pid: nil, path: nil, fromNs: nil, toNs: nil, managedOnly: false)
                .map { $0.mapValues(jsonValue) },
            "blocks": try store.blocks(recording: r.id, after: 0, limit: tableRows, op: nil, fromNs: nil, toNs: nil, lbaFrom: nil, lbaTo: nil)
                .map { $0.mapValues(jsonValue) },
            "notes": try store.notes(recording: r.id).map { $0.mapValues(jsonValue) },
            "gadf": gadf,
            "generatedNs": NSNumber(value: UInt64(Date().timeIntervalSince1970 * 1e9)),
        ]
        let json = String(decoding: try JSONSerialization.data(withJSONObject: data, options: [.sortedKeys]), as: UTF8.self)
            .replacingOccurrences(of: "</", with: "<\\/")
        func inline(_ d: Data) -> String { String(decoding: d, as: UTF8.self).replacingOccurrences(of: "</script", with: "<\\/script") }
        var html = String(decoding: page, as: UTF8.self)
        html = html.replacingOccurrences(of: "<link rel=\"stylesheet\" href=\"/style.css\">", with: "<style>\n\(String(decoding: css, as: UTF8.self))\n</style>")
        html = html.replacingOccurrences(of: "<script src=\"/vendor/chart.js\"></script>", with: "<script>\n\(inline(chart))\n</script>")
        html = html.replacingOccurrences(of: "<script src=\"/app.js\"></script>",
                                         with: "<script>window.KANSHI_REPORT = \(json);</script>\n<script>\n\(inline(app))\n</script>")
        return html
    }
}
