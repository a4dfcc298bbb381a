import ArgumentParser
import Foundation
import KanshiML
import KanshiRules
import KanshiSystem
import KanshiTrace

struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a program (or attach to a process) under the syscall sensor: behaviour log, managed set, no leaks.",
        discussion: """
            Examples:
              kanshi trace --log run.jsonl -- make
              kanshi trace --protect /srv/secret --log run.jsonl -- python3 job.py
              kanshi trace --pid 1234 --log attached.jsonl
              kanshi trace --rules builtin --alerts alerts.jsonl -- ./installer.sh
            The behaviour log is JSON lines (fields in README.md, "Syscall sensor"); the managed set \
            is saved beside it as LOG.managed.json and loaded again by the next run with the same log. \
            A summary is printed to standard error at the end. x86_64 Linux only; needs ptrace. \
            With --rules, rules follow the log as it is written (the same alerts kanshi rules check gives \
            on the finished log): alerts go to standard error as JSON lines (and --alerts, --webhook, \
            --syslog); a rule with the kill action kills the process, and one with the isolate action cuts its network \
            (its Internet and packet sockets refused from its next call on; Unix sockets, pipes and files \
            still work): the process's tree for rules keyed by tree, and in both cases what it starts later.
            """)

    @Option(name: .long, help: "A confidential file or directory (repeatable). Readers become managed.")
    var protect: [String] = []
    @Option(name: .long, help: "Behaviour log (JSON lines).")
    var log: String = "kanshi-trace.jsonl"
    @Option(name: .long, help: "The managed set to load and save (default: LOG.managed.json).")
    var managedSet: String?
    @Option(name: .long, help: "Attach to this running process instead of starting PROGRAM.")
    var pid: Int32?
    @Flag(name: .long, help: "Treat loopback addresses as off the machine (tests: a loopback listener stands for the Internet).")
    var loopbackExternal = false
    @Flag(name: .long, help: "Stop on every read/write of every process too (byte counts for all; slower).")
    var allIo = false
    @Flag(name: .long, help: "Refused calls return EACCES instead of EPERM.")
    var eacces = false
    @Flag(name: .long, help: "Do not print the summary.")
    var quiet = false
    @Option(name: .long, help: "Write the summary to this file as well.")
    var summary: String?
    @Option(name: .long, help: "Process model (kanshi behaviour train): follow the log as it is written; the process tree it names as ransomware-like is killed.")
    var processModel: String?
    @Option(name: .long, help: "With --process-model: only files under this directory count (default: all).")
    var watch: String = "/"
    @Option(name: .long, help: ArgumentHelp("Rules to run live on the log: a rules file, or builtin for the built-in set.", valueName: "file|builtin"))
    var rules: String?
    @OptionGroup var alertSinks: AlertSinkOptions
    @OptionGroup var shipping: ShipOptions
    @OptionGroup var global: GlobalOptions
    @Argument(parsing: .captureForPassthrough, help: "-- PROGRAM [ARGS...]")
    var command: [String] = []

    func validate() throws {
        // Passthrough capture swallows --help and -h before '--'; they still ask for help.
        let given = TraceCommandLine(passthrough: command)
        if given == .help { throw CleanExit.helpRequest(self) }
        if pid == nil && given.target == nil { throw ValidationError("give a program to run after '--', or --pid N") }
        if pid != nil && given.target != nil { throw ValidationError("give either --pid or a program, not both") }
        if let pid, pid <= 0 { throw ValidationError("--pid must be a positive process id, not \(pid)") }
    }

    func run() throws {
        let logger = try CLILogging.logger(label: "kanshi.trace", level: global.logLevel)
        var options = TraceOptions()
        options.protect = protect.map { p in
            guard let r = realpath(p, nil) else { return ManagedSetPath.absolute(p) }
            defer { free(r) }
            return String(cString: r)
        }
        for (given, p) in zip(protect, options.protect) where !FileManager.default.fileExists(atPath: p) {
            logger.warning("--protect \(given): does not exist (yet); protected by name")
        }
        options.loopbackExternal = loopbackExternal
        options.traceAllIO = allIo
        options.denyErrno = eacces ? EACCES : EPERM
        let setPath = managedSet ?? log + ".managed.json"
        let set: ManagedSet
        do { set = try ManagedSet.load(path: setPath, protect: options.protect) } catch { throw CLIError("\(error)") }
        let eventLog: EventLog
        do { eventLog = try EventLog(path: log) } catch { throw CLIError("\(error)") }
        let tracer: Tracer
        do { tracer = try Tracer(options: options, log: eventLog, managed: set, logger: logger) } catch { throw CLIError("\(error)") }
        guard let target = pid.map({ TraceTarget.attach(pid: $0) }) ?? TraceCommandLine(passthrough: command).target else {
            throw ValidationError("give a program to run after '--', or --pid N")
        }
        // With a process model: a watcher follows the log and kills the tree it names.
        let guardian = try processModel.map { path -> ProcessGuardian in
            let m: DetectorModel
            do { m = try DetectorModel.load(from: path, for: .processes) } catch { throw CLIError("\(error)") }
            do { return try ProcessGuardian(model: m, log: log, under: ManagedSet.normalize(watch)) } catch { throw CLIError("\(error)") }
        }
        guardian?.start()
        let fanout = try rules.map { _ in try alertSinks.sinks(standardOutput: false, standardError: true) }
        let ruleWatch = try rules.map { r -> RuleWatch in
            let set = try RulesFileOption.load(r == "builtin" ? nil : r)
            let engine = RuleEngine(set, world: RuleWorld(protected: options.protect))
            let actions = TraceRuleActions(tracer: tracer, world: engine.world)
            return RuleWatch(engine: engine, log: log, fanout: fanout!) { alert in
                for line in actions.perform(alert) { Output.error("trace: \(line)") }
            }
        }
        ruleWatch?.start()
        let shipper = try shipping.start(journal: nil, log: log)
        // Ctrl-C reaches the traced program (same process group); kanshi stays to finish the log.
        signal(SIGINT, SIG_IGN)
        let result: TraceResult
        do {
            result = try tracer.runOnDedicatedThread(target)
        } catch {
            guardian?.finish()
            eventLog.close()
            ruleWatch?.finish()
            fanout?.close()
            ShipOptions.finish(shipper)
            throw CLIError("\(error)")
        }
        let alert = guardian?.finish()
        let writeErr = eventLog.close()
        ShipOptions.finish(shipper)
        let ruleAlerts = ruleWatch?.finish() ?? []
        fanout?.close()
        do { try result.managed.save(path: setPath) } catch { throw CLIError("\(error)") }
        if !quiet { Output.error(result.summary.text + "log: \(log)  managed set: \(setPath)") }
        if let summary { try result.summary.text.write(toFile: summary, atomically: true, encoding: .utf8) }
        if writeErr != 0 { throw CLIError("writing the log \(log) failed: \(String(cString: strerror(writeErr))) (errno \(writeErr))") }
        if let failure = guardian?.failure { Output.error("trace: WARNING: the process detector stopped: \(failure)") }
        if let failure = ruleWatch?.failure { Output.error("trace: WARNING: the rules stopped: \(failure)") }
        if let ruleWatch, !quiet {
            let by = Dictionary(grouping: ruleAlerts, by: { $0.rule }).mapValues { $0.count }
            Output.error("trace: rules: \(ruleAlerts.count) alert(s)\(by.isEmpty ? "" : ": " + by.keys.sorted().map { "\($0) \(by[$0]!)" }.joined(separator: ", ")) on \(ruleWatch.engine.stats.events) events")
        }
        if let a = alert {
            Output.error("trace: ALERT: pid \(a.alert.root) (\(a.alert.argv.joined(separator: " "))) behaves like ransomware (p=\(String(format: "%.2f", a.alert.probability))): \(a.alert.destroyed) files that were there before it destroyed; killed its tree: \(a.killed.map(String.init).joined(separator: " "))")
            throw ExitCode(3)
        }
        if result.exitCode != 0 { throw ExitCode(result.exitCode) }
    }
}

enum ManagedSetPath {
    static func absolute(_ p: String) -> String { ManagedSet.normalize(p) }
}
