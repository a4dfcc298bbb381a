import ArgumentParser
import Foundation
import KanshiML
import KanshiServer
import KanshiShip
import KanshiSystem

struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Collect what sensors ship: verified journal copies, behaviour logs, alerts; an HTTP API for analysts.",
        discussion: """
            Quick start:
              kanshi server token add lab-vm --data srv > lab-vm.token
              echo 'a long password' | kanshi server user add alice --data srv
              kanshi server --data srv --listen 127.0.0.1:8470 &
              kanshi disk serve --image d.img --journal j --port 10809 \\
                  --ship http://127.0.0.1:8470 --ship-token-file lab-vm.token
              kanshi server verify --data srv
            The token is printed once (the server keeps its hash); the password is read from \
            standard input. Every chunk a sensor ships is checked against the journal's checksums \
            and hash chain before it is kept, and made durable before it is acknowledged; the rules \
            and detectors run on what arrives and the alerts are kept. The dashboard is at \
            http://ADDR:PORT/ (log in as the user). See README.md, "kanshi server".
            """,
        subcommands: [ServerServe.self, ServerToken.self, ServerUser.self, ServerVerify.self, ServerUpload.self],
        defaultSubcommand: ServerServe.self)
}

struct ServerDataOption: ParsableArguments {
    @Option(help: ArgumentHelp("The server's data directory (journals, logs, the SQLite index).", valueName: "dir"))
    var data: String = "kanshi-server"
}

struct ServerServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the server (the default: `kanshi server --data DIR` runs this).")

    @OptionGroup var data: ServerDataOption
    @Option(help: ArgumentHelp("Address and port to listen on (port 0 picks a free one).", valueName: "addr:port"))
    var listen = "127.0.0.1:8470"
    @Option(help: ArgumentHelp("PEM certificate (chain) for HTTPS; with --tls-key.", valueName: "file"))
    var tlsCert: String?
    @Option(help: ArgumentHelp("PEM private key for HTTPS; with --tls-cert.", valueName: "file"))
    var tlsKey: String?
    @Option(help: ArgumentHelp("Rules run on what arrives (a file, or builtin).", valueName: "file|builtin"))
    var rules = "builtin"
    @Option(help: ArgumentHelp("Disk detector run on arriving block records: a model file (kanshi train), shipped (models/sandbox-detector.json of the checkout) or none.", valueName: "file|shipped|none"))
    var model = "shipped"
    @Option(help: ArgumentHelp("Process detector run on arriving behaviour events: a model file (kanshi behaviour train), shipped (models/process-detector.json) or none.", valueName: "file|shipped|none"))
    var processModel = "shipped"
    @Option(help: ArgumentHelp("Only files under this directory count for the process detector.", valueName: "dir"))
    var processPrefix = ProcessTraining.guestPrefix
    @Option(help: ArgumentHelp("Every this many seconds, write what arrived to the fleet's Parquet tables (DATA/fleet, for kanshi fleet); 0: never.", valueName: "seconds"))
    var fleetExport = 10.0
    @Option(help: ArgumentHelp("The Python with pyarrow for the fleet export (default: KANSHI_PYTHON, then .build/python beside kanshi, then python3).", valueName: "path"))
    var python: String?

    func validate() throws {
        _ = try Self.parse(listen: listen)
        if !(fleetExport >= 0) { throw ValidationError("--fleet-export must be 0 (never) or a number of seconds, got \(fleetExport)") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
    }

    static func parse(listen: String) throws -> (String, Int) {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen \(listen): expected ADDRESS:PORT, e.g. 127.0.0.1:8470")
        }
        var host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    /// A detector's model: a file, the checkout's shipped one (skipped with a note when this kanshi
    /// is not in a checkout), or none.
    static func model(_ choice: String, shipped: String, use: DetectorModel.Use, option: String) throws -> DetectorModel? {
        if choice == "none" { return nil }
        let path: String
        if choice == "shipped" {
            guard let p = try? ShippedModels.path(shipped) else {
                Output.error("kanshi: \(option): the shipped \(shipped) is not found from this kanshi; running without that detector")
                return nil
            }
            path = p
        } else {
            path = choice
        }
        do { return try DetectorModel.load(from: path, for: use) } catch { throw CLIError("\(option) \(path): \(error)") }
    }

    func run() async throws {
        var options = ServerOptions(data: data.data)
        (options.host, options.port) = try Self.parse(listen: listen)
        options.certificate = tlsCert
        options.key = tlsKey
        options.rules = try RulesFileOption.load(rules == "builtin" ? nil : rules)
        options.detectors.disk = try Self.model(model, shipped: ShippedModels.disk, use: .blocks, option: "--model")
        options.detectors.process = try Self.model(processModel, shipped: ShippedModels.process, use: .processes, option: "--process-model")
        options.detectors.processPrefix = processPrefix
        options.fleetExportSeconds = fleetExport > 0 ? fleetExport : nil
        options.python = python
        let server: AnalysisServer
        do {
            server = try AnalysisServer(options: options)
        } catch {
            throw CLIError("\(error)")
        }
        let scheme = tlsCert == nil ? "http" : "https", host = options.host
        let detectors = [options.detectors.disk.map { _ in "disk" }, options.detectors.process.map { _ in "process" }].compactMap { $0 }.joined(separator: ", ")
        let sensors = (try? server.store.sensors().count) ?? 0
        do {
            try await server.run { port in
                Output.line("kanshi: server at \(scheme)://\(host):\(port) data \(server.store.directory) (\(sensors) sensor token(s); rules \(rules); detectors: \(detectors.isEmpty ? "none" : detectors))")
            }
        } catch {
            throw CLIError("server stopped: \(error)")
        }
    }
}

struct ServerToken: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Sensor tokens: each sensor ships with its own, and can write only its own recordings.",
        subcommands: [Add.self, Remove.self, List.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a sensor and print its token (shown once; the server keeps only its hash).",
            discussion: "Save it to a file readable by the sensor only, e.g.: kanshi server token add lab-vm --data srv > lab-vm.token && chmod 600 lab-vm.token")
        @Argument(help: "The sensor's name (letters, digits, '.', '-', '_').")
        var name: String
        @OptionGroup var data: ServerDataOption
        func run() throws {
            do {
                print(try ServerStore(directory: data.data).addSensor(name))
            } catch { throw CLIError("\(error)") }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a sensor's token (its recordings stay).")
        @Argument var name: String
        @OptionGroup var data: ServerDataOption
        func run() throws {
            do { try ServerStore(directory: data.data, create: false).removeSensor(name) } catch { throw CLIError("\(error)") }
            Output.line("kanshi: token of sensor \(name) revoked")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List sensors.")
        @OptionGroup var data: ServerDataOption
        func run() throws {
            do {
                for s in try ServerStore(directory: data.data, create: false).sensors() { print("\(s.name)\t\(Output.time(s.createdNs))") }
            } catch { throw CLIError("\(error)") }
        }
    }
}

struct ServerUser: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user",
        abstract: "Analyst logins for the web page and the API.",
        subcommands: [Add.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a user, or set a user's password (read from standard input, first line; at least 8 characters).")
        @Argument var name: String
        @OptionGroup var data: ServerDataOption
        func run() throws {
            guard let password = readLine(strippingNewline: true), !password.isEmpty else {
                throw CLIError("no password on standard input (e.g. echo 'a long password' | kanshi server user add \(name) --data DIR)")
            }
            do { try ServerStore(directory: data.data).addUser(name, password: password) } catch { throw CLIError("\(error)") }
            Output.line("kanshi: user \(name) can log in")
        }
    }
}

struct ServerVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every stored journal's chain, against the chain heads kept as it arrived, and optionally a sensor's own journal.",
        discussion: """
            Examples:
              kanshi server verify --data srv
              kanshi server verify --data srv --recording lab-vm/run1 --journal /var/lib/kanshi/run1.journal
            With --journal, every byte the server acknowledged must be the same in the sensor's local \
            journal: a host that rewrote its history after shipping it (even with a recomputed chain) \
            is caught. Exit status 0 when everything verifies, 1 otherwise.
            """)

    @OptionGroup var data: ServerDataOption
    @Option(help: ArgumentHelp("Only this recording (repeatable).", valueName: "sensor/name"))
    var recording: [String] = []
    @Option(help: ArgumentHelp("A sensor's local journal to compare with what the server received (needs one --recording).", valueName: "dir"))
    var journal: String?
    @Flag(help: "Print the findings as JSON.")
    var json = false

    func validate() throws {
        if journal != nil && recording.count != 1 { throw ValidationError("--journal needs exactly one --recording SENSOR/NAME") }
    }

    func run() throws {
        let findings: [ServerVerifier.Finding]
        do {
            let store = try ServerStore(directory: data.data, create: false)
            if let journal {
                findings = [try ServerVerifier.compare(store: store, recording: recording[0], localJournal: journal)]
            } else {
                findings = try ServerVerifier.verify(store: store, only: recording)
            }
        } catch { throw CLIError("\(error)") }
        if json {
            print(try Output.json(findings.map { ["recording": $0.recording, "ok": $0.ok, "records": $0.records, "bytes": $0.bytes,
                                                  "segments": $0.segments, "problems": $0.problems] as [String: Any] }))
        } else {
            if findings.isEmpty { Output.line("kanshi: no recordings on this server yet") }
            for f in findings { print(f) }
        }
        if findings.contains(where: { !$0.ok }) { throw ExitCode(1) }
    }
}

struct ServerUpload: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upload",
        abstract: "Ship a finished journal and/or behaviour log to a server (or finish shipping one a sensor left unacknowledged).",
        discussion: """
            Example:
              kanshi server upload --journal run1.journal --log run1.jsonl --ship http://10.0.0.5:8470 --ship-token-file lab-vm.token --ship-as run1
            Resumes from where the server's copy ends; exit status 1 if anything is left unacknowledged.
            """)

    @Option(help: ArgumentHelp("Journal directory to ship.", valueName: "dir"))
    var journal: String?
    @Option(help: ArgumentHelp("Behaviour log to ship.", valueName: "file"))
    var log: String?
    @OptionGroup var shipping: ShipOptions
    @Option(help: "Give up after this many seconds.")
    var timeout: Double = 600

    func validate() throws {
        if journal == nil && log == nil { throw ValidationError("give --journal and/or --log") }
        if shipping.ship == nil { throw ValidationError("--ship URL is required") }
    }

    func run() throws {
        let s = try shipping.start(journal: journal, log: log)
        ShipOptions.finish(s, timeout: timeout)
        if let st = s?.status, st.backlog > 0 || st.stopped != nil { throw ExitCode(1) }
    }
}

/// Shipping to `kanshi server` from a sensor.
struct ShipOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Ship the recording to a Kanshi server as it is made (http://HOST:PORT or https://…).", valueName: "url"))
    var ship: String?
    @Option(help: ArgumentHelp("File holding this sensor's token (kanshi server token add NAME); default: $KANSHI_SHIP_TOKEN.", valueName: "file"))
    var shipTokenFile: String?
    @Option(help: ArgumentHelp("The recording's name on the server (default: from the journal or log name).", valueName: "name"))
    var shipAs: String?
    @Option(help: ArgumentHelp("PEM certificate to trust for an https server with its own certificate.", valueName: "file"))
    var shipCa: String?
    @Option(help: ArgumentHelp("Unacknowledged MiB past which the sensor holds its disk writes until the server catches up (disk serve, sandbox run).", valueName: "MiB"))
    var shipBacklogMib: UInt64 = 1024

    /// A started shipper for a journal and/or log, or nil without --ship.
    func start(journal: String?, log: String?) throws -> Shipper? {
        guard let ship else { return nil }
        let token: String
        if let file = shipTokenFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw CLIError("--ship-token-file \(file): cannot be read") }
            token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        } else if let env = ProcessInfo.processInfo.environment["KANSHI_SHIP_TOKEN"] {
            token = env.trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            throw CLIError("--ship needs this sensor's token: --ship-token-file FILE or KANSHI_SHIP_TOKEN (make one with `kanshi server token add NAME`)")
        }
        let base = (journal ?? log).map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent } ?? "recording"
        let name = shipAs ?? String(base.map { ShipProtocol.validName(String($0)) ? $0 : "-" })
        do {
            var o = Shipper.Options(url: ship, token: token, recording: name, caFile: shipCa)
            o.maxBacklog = shipBacklogMib << 20
            let s = try Shipper(options: o, journal: journal, log: log)
            s.start()
            Output.error("kanshi: shipping \([journal, log].compactMap { $0 }.joined(separator: " and ")) to \(ship) as \(name)")
            return s
        } catch { throw CLIError("\(error)") }
    }

    /// Ships what is left and says how it went (one line on standard error).
    static func finish(_ s: Shipper?, timeout: Double = 30) {
        guard let s else { return }
        let st = s.finish(timeout: timeout)
        var line = "kanshi: shipped \(Output.bytes(st.bytesShipped)) in \(st.chunksShipped) chunk(s)"
        if st.backlog > 0 { line += "; \(Output.bytes(st.backlog)) NOT acknowledged yet (kept locally; ship again with the same --ship-as to finish)" }
        if st.throttled > 0 { line += "; writes held back \(st.throttled) time(s) while the server caught up" }
        if st.failures > 0 { line += "; \(st.failures) failed attempt(s), last: \(st.lastError ?? "?")" }
        if let stopped = st.stopped { line += "; STOPPED: \(stopped)" }
        Output.error(line)
    }
}

struct BenchShip: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ship",
        abstract: "Many sensors shipping at full speed to a running kanshi server; MB/s ingested beside writing the same bytes to local disk.",
        discussion: """
            scripts/bench-server.sh runs this against a server it kills with -9 and restarts meanwhile, \
            then checks that every acknowledged byte is stored and verifies, and samples the server's memory.
            Each sensor writes 256 KiB block records into its own journal as fast as its shipper lets it \
            (back-pressure holds it while the server is behind or down) for --seconds, then ships the rest.
            """)

    @Option(help: ArgumentHelp("The server (http://HOST:PORT).", valueName: "url"))
    var server: String
    @Option(help: ArgumentHelp("File with one sensor token per line (one sensor per token).", valueName: "file"))
    var tokens: String
    @Option(help: ArgumentHelp("Where the sensors' journals go (and the local-disk baseline's copy).", valueName: "dir"))
    var dir: String
    @Option(help: "Seconds the sensors write.")
    var seconds: Double = 120
    @Option(help: ArgumentHelp("Unacknowledged MiB per sensor before it is held back.", valueName: "MiB"))
    var backlogMib: UInt64 = 32
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        guard let text = try? String(contentsOfFile: tokens, encoding: .utf8) else { throw CLIError("--tokens \(tokens): cannot be read") }
        let list = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !list.isEmpty else { throw CLIError("--tokens \(tokens): no tokens in it") }
        var o = ShipBench.Options(url: server, tokens: list, directory: dir + "/sensors", seconds: seconds)
        o.maxBacklog = backlogMib << 20
        let r: ShipBench.Result
        do {
            r = try ShipBench.run(o) { Output.error("bench ship: \($0)") }
        } catch { throw CLIError("bench ship: \(error)") }
        let local = try ShipBench.localDiskBaseline(journals: r.sensors.map(\.journal), into: dir + "/local-copy")
        try? FileManager.default.removeItem(atPath: dir + "/local-copy")
        let ingest = Double(r.acknowledged) / r.seconds / 1e6, disk = Double(local.bytes) / local.seconds / 1e6
        if json {
            Output.line(try Output.json([
                "sensors": r.sensors.count, "seconds": r.seconds, "writtenBytes": r.written, "acknowledgedBytes": r.acknowledged,
                "unacknowledgedBytes": r.unacknowledged, "ingestMBps": ingest, "localDiskMBps": disk, "ratio": ingest / disk,
                "failedAttempts": r.failures, "chunksResent": r.resent, "heldBack": r.throttled,
                "journals": r.sensors.map(\.journal), "stopped": r.sensors.compactMap(\.status.stopped)]))
        } else {
            Output.line("""
                sensors: \(r.sensors.count), \(String(format: "%.1f", r.seconds)) s from the first write to the last acknowledgement
                written: \(Output.bytes(r.written)) of block data; journals acknowledged by the server: \(Output.bytes(r.acknowledged)); unacknowledged: \(Output.bytes(r.unacknowledged))
                ingested: \(String(format: "%.1f", ingest)) MB/s; the same bytes to local disk (4 MiB writes, each synced): \(String(format: "%.1f", disk)) MB/s; ratio \(String(format: "%.2f", ingest / disk))
                failed attempts (server down): \(r.failures); chunks the server already had: \(r.resent); sensors held back: \(r.throttled) time(s)
                """)
        }
        if r.unacknowledged > 0 || r.sensors.contains(where: { $0.status.stopped != nil }) { throw ExitCode(1) }
    }
}
