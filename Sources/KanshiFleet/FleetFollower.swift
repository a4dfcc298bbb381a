import Foundation
import KanshiJournal
import KanshiSystem

/// Keeps the fleet's tables up to date with journals that grow: what the
/// server runs as recordings arrive. Each round exports, per recording, the
/// records after the last round's end (`FleetExport.append`) and saves where
/// it got to in `ROOT/.state/HOST/RECORDING.position`. A round that fails
/// leaves the tables and the saved position as they were; the next round
/// exports the same records again (a part's file is named by its first
/// sequence number, so a part written twice is one file).
public final class FleetFollower: @unchecked Sendable {
    // SAFETY: rounds run on one thread at a time (`lock`).
    public let root: String
    public let python: FleetPython
    private let lock = NSLock()
    private var stopped = false

    public init(root: String, python: FleetPython) throws {
        try python.require(["pyarrow", "pyarrow.parquet"], for: "writing the fleet's Parquet tables")
        self.root = root
        self.python = python
    }

    func statePath(host: String, recording: String) -> String { root + "/.state/\(host)/\(recording).position" }

    /// The saved end of the last export of a recording (nil: none yet).
    public func position(host: String, recording: String) -> JournalTail.Position? {
        guard let text = try? String(contentsOfFile: statePath(host: host, recording: recording), encoding: .utf8) else { return nil }
        let f = text.split(separator: " ").compactMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard f.count == 3 else { return nil }
        return JournalTail.Position(segment: f[0], offset: f[1], nextSequence: f[2] == 0 ? nil : f[2])
    }

    /// Exports what a recording's journal holds past its saved position; the records exported.
    @discardableResult
    public func follow(host: String, recording: String, journal: String) throws -> Int {
        lock.lock(); defer { lock.unlock() }
        let start = position(host: host, recording: recording)
            ?? JournalTail.Position(segment: 1, offset: UInt64(JournalFormat.segmentHeaderLength), nextSequence: nil)
        let export = try FleetExport(root: root, host: host, recording: recording, python: python)
        // Nothing new: no writer started.
        let probe = try JournalTail(directory: journal, from: start)
        var any = false
        do { _ = try probe.poll { _ in any = true; throw Stop() } } catch is Stop {}
        guard any else { return 0 }
        let s = try export.append(journal: journal, from: start)
        if let end = s.end {
            let path = statePath(host: host, recording: recording)
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data("\(end.segment) \(end.offset) \(end.nextSequence ?? 0)\n".utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        }
        return s.records
    }

    private struct Stop: Error {}

    /// Every `interval` seconds, follows each (host, recording, journal) that `recordings` lists,
    /// until `stop`. Failures go to `log`; the next round retries.
    public func start(every interval: Double, recordings: @escaping @Sendable () -> [(host: String, recording: String, journal: String)],
                      log: @escaping @Sendable (String) -> Void) {
        let t = Thread { [self] in
            while true {
                lock.lock(); let stop = stopped; lock.unlock()
                if stop { return }
                for r in recordings() {
                    do { try follow(host: r.host, recording: r.recording, journal: r.journal) } catch {
                        log("fleet export of \(r.host)/\(r.recording) failed (retried next round): \(error)")
                    }
                }
                Thread.sleep(forTimeInterval: interval)
            }
        }
        t.name = "kanshi-fleet-export"
        t.start()
    }

    public func stop() {
        lock.lock(); stopped = true; lock.unlock()
    }
}
