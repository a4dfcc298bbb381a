import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import KanshiFleet
import KanshiJournal
import KanshiRules
import KanshiShip
import KanshiSystem
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// How `kanshi server` runs.
public struct ServerOptions: Sendable {
    public var data: String
    public var host = "127.0.0.1"
    public var port = 8470
    /// PEM certificate chain and private key: HTTPS when both are given.
    public var certificate: String?
    public var key: String?
    /// The rules run on what arrives (the built-in set by default).
    public var rules: RuleSet?
    /// The detectors run on what arrives.
    public var detectors = Detectors()
    /// Threads that check and store chunks (each ends in a sync, so more than the cores help).
    public var ingestThreads = 8
    /// Seconds between rounds of the fleet's Parquet export (DATA/fleet; `kanshi fleet`); nil: none.
    public var fleetExportSeconds: Double?
    /// The Python with pyarrow for that export (nil: `FleetPython`'s search).
    public var python: String?

    public init(data: String) { self.data = data }
}

/// The server: sensors ship journals and behaviour logs to it (`ShipProtocol`), it checks every
/// chunk against the hash chain before keeping it, runs the rules on what arrives and keeps the
/// alerts; analysts read recordings and alerts through the API after logging in.
public final class AnalysisServer: Sendable {
    public let options: ServerOptions
    public let store: ServerStore
    let ingest: IngestRegistry
    let pool: NIOThreadPool
    static let sessionCookie = "kanshi_session"

    public init(options: ServerOptions) throws {
        self.options = options
        store = try ServerStore(directory: options.data)
        let rules = try options.rules ?? RuleSet.builtin()
        ingest = IngestRegistry(store: store, rules: rules, detectors: options.detectors)
        pool = NIOThreadPool(numberOfThreads: options.ingestThreads)
        if (options.certificate == nil) != (options.key == nil) {
            throw ServerError("--tls-cert and --tls-key go together (HTTPS needs both)")
        }
    }

    /// Serves until the task is cancelled or the process gets SIGINT/SIGTERM; `onListening` gets the port.
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        ProcessMemory.returnLargeBuffers()
        pool.start()
        var server: HTTPServerBuilder = .http1()
        if let cert = options.certificate, let key = options.key {
            let tls: TLSConfiguration
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
                tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            } catch {
                throw ServerError("--tls-cert \(cert) / --tls-key \(key): \(error)")
            }
            server = try .tls(.http1(), tlsConfiguration: tls)
        }
        var logger = Logger(label: "kanshi.server")
        logger.logLevel = .warning
        let app = Application(
            router: router(),
            server: server,
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "kanshi"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        defer { pool.shutdownGracefully { _ in } }
        let follower = startFleetExport()
        defer { follower?.stop() }
        try await app.runService()
    }

    /// The fleet's tables kept up to date as recordings arrive (DATA/fleet), unless turned off or
    /// pyarrow is missing (then said once on standard error: the server itself runs on).
    func startFleetExport() -> FleetFollower? {
        guard let seconds = options.fleetExportSeconds else { return nil }
        let follower: FleetFollower
        do { follower = try FleetFollower(root: options.data + "/fleet", python: try FleetPython(options.python)) } catch {
            FileHandle.standardError.write(Data("kanshi server: no fleet export (kanshi fleet will not see new recordings): \(error)\n".utf8))
            return nil
        }
        let root = store.directory + "/recordings"
        follower.start(every: seconds, recordings: {
            var out: [(host: String, recording: String, journal: String)] = []
            for sensor in ((try? FileSystem.list(root)) ?? []).sorted() {
                for name in ((try? FileSystem.list(root + "/" + sensor)) ?? []).sorted() {
                    let journal = root + "/\(sensor)/\(name)/journal"
                    if FileSystem.isDirectory(journal) { out.append((sensor, name, journal)) }
                }
            }
            return out
        }, log: { line in FileHandle.standardError.write(Data("kanshi server: \(line)\n".utf8)) })
        return follower
    }

    // MARK: routes

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/api/ship") { [self] req, _ in
            let sensor = try await sensor(req)
            return try json(ShipProtocol.Identity(sensor: sensor))
        }
        router.get("/api/ship/:sensor/:name/journal") { [self] req, ctx in
            let i = try await recording(req, ctx)
            return try await blocking { try json(i.journalHead()) }
        }
        router.put("/api/ship/:sensor/:name/journal") { [self] req, ctx in
            let i = try await recording(req, ctx)
            guard let segment = req.uri.queryParameters.get("segment", as: UInt64.self), segment >= 1,
                  let offset = req.uri.queryParameters.get("offset", as: UInt64.self) else {
                return refusal(.badRequest, "PUT journal needs ?segment=S&offset=O (S from 1)")
            }
            let body = try await collect(req)
            return try await blocking { try json(i.appendJournal(at: ShipPosition(segment: segment, offset: offset), body)) }
        }
        router.get("/api/ship/:sensor/:name/log") { [self] req, ctx in
            let i = try await recording(req, ctx)
            return try await blocking { try json(i.logHead()) }
        }
        router.put("/api/ship/:sensor/:name/log") { [self] req, ctx in
            let i = try await recording(req, ctx)
            guard let offset = req.uri.queryParameters.get("offset", as: UInt64.self) else {
                return refusal(.badRequest, "PUT log needs ?offset=O")
            }
            let body = try await collect(req)
            return try await blocking { try json(i.appendLog(at: offset, body)) }
        }

        router.post("/api/login") { [self] req, _ in
            var r = req
            let body = try await r.collectBody(upTo: 1 << 16)
            guard let login = try? JSONDecoder().decode(Login.self, from: Data(body.readableBytesView)) else {
                return refusal(.badRequest, "login needs a JSON object {\"user\": …, \"password\": …}")
            }
            guard let session = try await blocking({ try self.store.login(user: login.user, password: login.password) }) else {
                return refusal(.unauthorized, "wrong user or password")
            }
            var response = try json(["user": login.user])
            response.setCookie(.init(name: Self.sessionCookie, value: session, maxAge: Int(ServerStore.sessionLifetimeNs / 1_000_000_000),
                                     path: "/", secure: options.certificate != nil, httpOnly: true, sameSite: .strict))
            return response
        }
        router.post("/api/logout") { [self] req, _ in
            if let s = req.cookies[Self.sessionCookie]?.value { try store.logout(session: s) }
            return try json(["user": ""])
        }
        router.get("/api/whoami") { [self] req, _ in try json(["user": try await user(req)]) }
        router.get("/api/recordings") { [self] req, _ in
            _ = try await user(req)
            return try json(try store.recordings())
        }
        router.get("/api/recordings/:sensor/:name") { [self] req, ctx in try json(try await readable(req, ctx)) }
        router.get("/api/alerts") { [self] req, _ in
            _ = try await user(req)
            let after: Int64 = try number(req, "after") ?? 0
            let limit = try int(req, "limit", 100, 1...1000)
            var recording: Int64?
            let q = req.uri.queryParameters
            switch (q.get("sensor"), q.get("recording")) {
            case (nil, nil):
                break
            case (let s?, let n?):
                guard let r = try store.recording(sensor: s, name: n) else { return refusal(.notFound, "no recording \(s)/\(n)") }
                recording = r.id
            default:
                return refusal(.badRequest, "give both sensor= and recording=, or neither")
            }
            return try json(try store.alerts(recording: recording, after: after, limit: limit))
        }
        addDashboard(to: router)
        return router
    }

    struct Login: Decodable {
        var user: String
        var password: String
    }

    /// Runs blocking work (file writes and syncs, SQLite) off the server's event loops.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            return try await pool.runIfActive(body)
        } catch let r as IngestRefusal {
            throw r.httpError
        }
    }

    /// The sensor whose token the request carries (401 otherwise).
    func sensor(_ req: Request) async throws -> String {
        guard let auth = req.headers[.authorization], auth.hasPrefix("Bearer ") else {
            throw APIError(.unauthorized, "this needs a sensor's token (Authorization: Bearer TOKEN; make one with `kanshi server token add NAME`)")
        }
        let token = String(auth.dropFirst("Bearer ".count))
        guard let name = try await blocking({ try self.store.sensor(token: token) }) else {
            throw APIError(.unauthorized, "unknown token")
        }
        return name
    }

    /// The logged-in user (401 otherwise).
    func user(_ req: Request) async throws -> String {
        guard let s = req.cookies[Self.sessionCookie]?.value else { throw APIError(.unauthorized, "log in first (POST /api/login)") }
        guard let u = try await blocking({ try self.store.user(session: s) }) else { throw APIError(.unauthorized, "the session has ended: log in again") }
        return u
    }

    func names(_ ctx: BasicRequestContext) throws -> (String, String) {
        let sensor = try ctx.parameters.require("sensor"), name = try ctx.parameters.require("name")
        guard ShipProtocol.validName(sensor), ShipProtocol.validName(name) else {
            throw APIError(.badRequest, "\(sensor)/\(name): names are 1 to 100 letters, digits, '.', '-' or '_'")
        }
        return (sensor, name)
    }

    /// The recording a sensor ships to: its own only (403 otherwise).
    func recording(_ req: Request, _ ctx: BasicRequestContext) async throws -> RecordingIngest {
        let me = try await sensor(req)
        let (sensor, name) = try names(ctx)
        guard sensor == me else { throw APIError(.forbidden, "sensor \(me) cannot write \(sensor)'s recordings") }
        return try await blocking { try self.ingest.ingest(sensor: sensor, name: name) }
    }

    /// The request's body, refusing one over the limit before reading it when its length is declared.
    func collect(_ req: Request) async throws -> [UInt8] {
        if let declared = req.headers[.contentLength].flatMap(Int.init), declared > ShipProtocol.maxBody {
            throw APIError(.contentTooLarge, "body of \(declared) bytes is over the limit of \(ShipProtocol.maxBody)")
        }
        do {
            let buffer = try await req.body.collect(upTo: ShipProtocol.maxBody)
            return Array(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "body is over the limit of \(ShipProtocol.maxBody) bytes")
        }
    }
}

/// An API refusal as JSON: `{"error": …}`, with the server's end for a 409.
struct APIError: HTTPResponseError {
    var status: HTTPResponse.Status
    var refusal: ShipProtocol.Refusal

    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        refusal = .init(error: message)
    }

    init(_ status: HTTPResponse.Status, _ refusal: ShipProtocol.Refusal) {
        self.status = status
        self.refusal = refusal
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = (try? JSONEncoder().encode(refusal)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension IngestRefusal {
    var httpError: APIError {
        switch self {
        case .conflict(_, let r): APIError(.conflict, r)
        case .malformed(let why): APIError(.badRequest, why)
        case .damaged(let why): APIError(.internalServerError, why)
        }
    }
}

func refusal(_ status: HTTPResponse.Status, _ message: String) -> Response {
    let data = (try? JSONEncoder().encode(ShipProtocol.Refusal(error: message))) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func json<T: Encodable>(_ value: T) throws -> Response {
    let data = try JSONEncoder().encode(value)
    return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}
