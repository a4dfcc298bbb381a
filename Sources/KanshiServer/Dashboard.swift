import Foundation
import GRDB
import Hummingbird
import KanshiShip
import NIOCore

/// The dashboard: its page and scripts (our own, from this module's resources; Chart.js vendored
/// from Debian's libjs-chart.js by scripts/vendor-js.sh), and the API calls it makes.
extension AnalysisServer {
    /// Files of the page, by URL path.
    static let assets: [String: (file: String, type: String)] = [
        "/": ("index.html", "text/html; charset=utf-8"),
        "/app.js": ("app.js", "text/javascript; charset=utf-8"),
        "/style.css": ("style.css", "text/css; charset=utf-8"),
        "/vendor/chart.js": ("vendor/chart.min.js", "text/javascript; charset=utf-8"),
    ]

    static func asset(_ name: String) -> Data? {
        guard let url = Bundle.module.url(forResource: "Dashboard/" + name, withExtension: nil) else { return nil }
        return try? Data(contentsOf: url)
    }

    func addDashboard(to router: Router<BasicRequestContext>) {
        for (path, a) in Self.assets {
            router.get(RouterPath(path)) { _, _ in
                guard let data = Self.asset(a.file) else {
                    let why = a.file.hasPrefix("vendor/")
                        ? "\(a.file) was not vendored into this build: run scripts/vendor-js.sh (it copies Chart.js from Debian's libjs-chart.js), then build again"
                        : "\(a.file) is missing from this build's resources"
                    return Response(status: .internalServerError, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: why)))
                }
                return Response(status: .ok, headers: [.contentType: a.type, .cacheControl: "no-cache"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
            }
        }
        let base = "/api/recordings/:sensor/:name"
        router.get(RouterPath(base + "/timeline")) { [self] req, ctx in
            let r = try await readable(req, ctx)
            let (from, to) = try range(req, r)
            return try json(try store.timeline(recording: r.id, fromNs: from, toNs: to, bins: int(req, "bins", 200, 1...2000)))
        }
        router.get(RouterPath(base + "/heatmap")) { [self] req, ctx in
            let r = try await readable(req, ctx)
            let (from, to) = try range(req, r)
            return try json(try store.heatMap(recording: r.id, fromNs: from, toNs: to, timeBins: int(req, "timeBins", 120, 1...1000),
                                              lbaBins: int(req, "lbaBins", 64, 1...1000)))
        }
        router.get(RouterPath(base + "/blocks")) { [self] req, ctx in
            let r = try await readable(req, ctx)
            return try rows(try store.blocks(recording: r.id, after: number(req, "after") ?? 0, limit: int(req, "limit", 100, 1...1000),
                                             op: req.uri.queryParameters.get("op"), fromNs: number(req, "from"), toNs: number(req, "to"),
                                             lbaFrom: number(req, "lbaFrom"), lbaTo: number(req, "lbaTo")))
        }
        router.get(RouterPath(base + "/events")) { [self] req, ctx in
            let r = try await readable(req, ctx)
            let q = req.uri.queryParameters
            return try rows(try store.events(recording: r.id, after: number(req, "after") ?? 0, limit: int(req, "limit", 100, 1...1000),
                                             ev: q.get("ev"), pid: number(req, "pid"), path: q.get("path"),
                                             fromNs: number(req, "from"), toNs: number(req, "to"), managedOnly: q.get("managed") == "1"))
        }
        router.get(RouterPath(base + "/processes")) { [self] req, ctx in
            let r = try await readable(req, ctx)
            return try json(try store.processes(recording: r.id))
        }
        router.get(RouterPath(base + "/files")) { [self] req, ctx in
            let r = try await readable(req, ctx)
            return try json(try store.changedFiles(recording: r.id))
        }
        router.get(RouterPath(base + "/notes")) { [self] req, ctx in
            let r = try await readable(req, ctx)
            return try rows(try store.notes(recording: r.id))
        }
        router.get(RouterPath(base + "/gadf")) { [self] req, ctx in
            let r = try await readable(req, ctx)
            return try json(try store.featureSeries(recording: r.id, bins: 64).keys.sorted())
        }
        router.get("/favicon.ico") { _, _ in Response(status: .noContent) }
        router.get(RouterPath(base + "/gadf/:series")) { [self] req, ctx in
            let r = try await readable(req, ctx)
            let name = try ctx.parameters.require("series").replacingOccurrences(of: ".bmp", with: "")
            let series = try store.featureSeries(recording: r.id, bins: int(req, "size", 64, 8...256))
            guard let s = series[name] else { return refusal(.notFound, "no series \(name) (there are: \(series.keys.sorted().joined(separator: ", ")))") }
            return Response(status: .ok, headers: [.contentType: "image/bmp"], body: .init(byteBuffer: ByteBuffer(bytes: GADF.bmp(GADF.field(s)))))
        }
        router.get(RouterPath(base + "/report")) { [self] req, ctx in
            let r = try await readable(req, ctx)
            let html = try Report.html(store: store, recording: r)
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8",
                                                   .contentDisposition: "attachment; filename=\"kanshi-\(r.sensor)-\(r.name).html\""],
                            body: .init(byteBuffer: ByteBuffer(string: html)))
        }
    }

    /// A recording an analyst asks about (logged in; 404 when there is none).
    func readable(_ req: Request, _ ctx: BasicRequestContext) async throws -> ServerStore.Recording {
        _ = try await user(req)
        let (sensor, name) = try names(ctx)
        guard let r = try store.recording(sensor: sensor, name: name) else { throw APIError(.notFound, "no recording \(sensor)/\(name)") }
        return r
    }

    /// A number given as `name=` (nil when absent); anything else there is a 400, never ignored.
    func number<T: FixedWidthInteger>(_ req: Request, _ name: String) throws -> T? {
        guard let text = req.uri.queryParameters.get(name) else { return nil }
        guard let v = T(text) else { throw APIError(.badRequest, "\(name)=\(text): expected a whole number in \(T.min)...\(T.max)") }
        return v
    }

    func int(_ req: Request, _ name: String, _ fallback: Int, _ allowed: ClosedRange<Int>) throws -> Int {
        guard let text = req.uri.queryParameters.get(name) else { return fallback }
        guard let v = Int(text), allowed.contains(v) else { throw APIError(.badRequest, "\(name)=\(text): expected a number in \(allowed.lowerBound)...\(allowed.upperBound)") }
        return v
    }

    /// The time range asked for (`from`, `to` in ns), the whole recording by default.
    func range(_ req: Request, _ r: ServerStore.Recording) throws -> (UInt64, UInt64) {
        let e = try store.extent(recording: r.id)
        let from: UInt64 = try number(req, "from") ?? e.fromNs ?? 0
        let to: UInt64 = try number(req, "to") ?? e.toNs ?? from
        guard to >= from else { throw APIError(.badRequest, "to (\(to)) is before from (\(from))") }
        return (from, to)
    }
}

func rows(_ list: [[String: DatabaseValue]]) throws -> Response {
    let data = try JSONSerialization.data(withJSONObject: list.map { $0.mapValues(jsonValue) }, options: [.sortedKeys])
    return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func jsonValue(_ v: DatabaseValue) -> Any {
    switch v.storage {
    case .null: NSNull()
    case .int64(let i): NSNumber(value: i)
    case .double(let d): NSNumber(value: d)
    case .string(let s): s
    case .blob(let b): b.base64EncodedString()
    }
}

/// Gramian angular difference fields of a series, as images.
public enum GADF {
    /// The field of `series` rescaled to [-1, 1]: G[i][j] = sin(φi − φj), φ = arccos(x).
    public static func field(_ series: [Double]) -> [[Double]] {
        let lo = series.min() ?? 0, hi = series.max() ?? 0
        let x = series.map { hi > lo ? (($0 - lo) / (hi - lo)) * 2 - 1 : 0 }
        let phi = x.map { acos(max(-1, min(1, $0))) }
        return phi.map { a in phi.map { b in sin(a - b) } }
    }

    /// A square field as a 24-bit BMP: -1 blue, 0 white, +1 red.
    public static func bmp(_ field: [[Double]]) -> [UInt8] {
        let n = field.count
        let rowBytes = (n * 3 + 3) / 4 * 4
        let pixelBytes = rowBytes * n
        let headerBytes = 54
        var out = [UInt8]()
        out.reserveCapacity(headerBytes + pixelBytes)
        func u16(_ v: Int) { out += [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }
        func u32(_ v: Int) { u16(v & 0xffff); u16((v >> 16) & 0xffff) }
        out += Array("BM".utf8); u32(headerBytes + pixelBytes); u32(0); u32(headerBytes)
        u32(40); u32(n); u32(n); u16(1); u16(24); u32(0); u32(pixelBytes); u32(2835); u32(2835); u32(0); u32(0)
        for row in (0..<n).reversed() {  // bottom-up
            var written = 0
            for v in field[row] {
                let t = max(-1, min(1, v))
                let (r, g, b): (Double, Double, Double) = t >= 0 ? (1, 1 - t, 1 - t) : (1 + t, 1 + t, 1)
                out += [UInt8(b * 255), UInt8(g * 255), UInt8(r * 255)]
                written += 3
            }
            out += [UInt8](repeating: 0, count: rowBytes - written)
        }
        return out
    }
}
