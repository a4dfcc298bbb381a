import KanshiJournal
import KanshiSystem

/// `kanshi server verify`: every stored journal against its own hash chain and against the chain
/// heads the server kept as segments arrived (so a stored copy rewritten with a recomputed chain
/// is caught), and, given a sensor's local journal, that journal against what the server received
/// (so a sensor host that rewrote its history is caught).
public enum ServerVerifier {
    public struct Finding: Sendable, CustomStringConvertible {
        public var recording: String
        public var ok: Bool
        public var records: Int
        public var bytes: UInt64
        public var segments: Int
        public var problems: [String]
        public var description: String {
            ok ? "\(recording): ok (\(records) records, \(bytes) bytes, \(segments) segments)"
               : "\(recording): FAILED\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
        }
    }

    /// Checks every recording (or those named SENSOR/NAME) the server holds.
    public static func verify(store: ServerStore, only: [String] = []) throws -> [Finding] {
        var out: [Finding] = []
        let all = try store.recordings()
        for name in only where !all.contains(where: { "\($0.sensor)/\($0.name)" == name }) {
            throw ServerError("no recording \(name) on this server (\(store.directory))")
        }
        for r in all where only.isEmpty || only.contains("\(r.sensor)/\(r.name)") {
            out.append(try verify(store: store, recording: r))
        }
        return out
    }

    static func verify(store: ServerStore, recording r: ServerStore.Recording) throws -> Finding {
        let label = "\(r.sensor)/\(r.name)"
        let dir = store.recordingDirectory(sensor: r.sensor, name: r.name) + "/journal"
        var f = Finding(recording: label, ok: true, records: 0, bytes: 0, segments: 0, problems: [])
        guard FileSystem.exists(dir + "/" + JournalFormat.segmentName(1)) else {
            if r.journalSegment > 1 || r.journalOffset > 0 { f.problems.append("the journal copy is gone (the index says it reached segment \(r.journalSegment))") }
            f.ok = f.problems.isEmpty
            return f
        }
        let report = try JournalVerifier.verify(directory: dir)
        f.records = report.records
        f.bytes = report.bytes
        f.segments = report.segments.count
        if let p = report.problem { f.problems.append("\(p)") }
        if let t = report.tornTail { f.problems.append("the copy ends in a torn record, which the server never keeps: \(t)") }
        let kept = try store.segmentHashes(recording: r.id)
        for s in report.segments where s.sealed {
            guard let expected = kept[s.index] else {
                f.problems.append("segment \(s.index) is sealed but the server never recorded its arrival")
                continue
            }
            if s.hash != expected {
                f.problems.append("segment \(s.index) hashes to \(s.hash ?? "?") but arrived as \(expected): the stored copy was rewritten")
            }
        }
        for (index, _) in kept where !report.segments.contains(where: { $0.index == index && $0.sealed }) {
            f.problems.append("segment \(index) arrived sealed but the copy no longer holds it sealed")
        }
        if let seg = r.checkpointSegment, let off = r.checkpointOffset, let hash = r.checkpointHash {
            // The checkpoint's record ends at `off` and carries the hash of the segment before it.
            let prefix = try JournalChunks.prefixHashes(directory: dir, upTo: ShipPosition(segment: seg, offset: off - UInt64(JournalFormat.recordHeaderLength + 32)))
            if let got = prefix[seg], got.hex != hash {
                f.problems.append("segment \(seg) up to its checkpoint at byte \(off) hashes to \(got.hex) but arrived as \(hash): the stored copy was rewritten")
            }
        }
        f.ok = f.problems.isEmpty
        return f
    }

    /// Compares a sensor's local journal with what the server received from it: every byte the
    /// server acknowledged must be the same in the local journal.
    public static func compare(store: ServerStore, recording label: String, localJournal: String) throws -> Finding {
        let parts = label.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let r = try store.recording(sensor: String(parts[0]), name: String(parts[1])) else {
            throw ServerError("no recording \(label) on this server (name it SENSOR/NAME; `kanshi server verify --data DIR` lists them)")
        }
        var f = try verify(store: store, recording: r)
        f.recording = "\(label) against \(localJournal)"
        let dir = store.recordingDirectory(sensor: r.sensor, name: r.name) + "/journal"
        let end = ShipPosition(segment: r.journalSegment, offset: r.journalOffset)
        let theirs = try JournalChunks.prefixHashes(directory: dir, upTo: end)
        let local: [UInt64: [UInt8]]
        do {
            local = try JournalChunks.prefixHashes(directory: localJournal, upTo: end)
        } catch {
            throw ServerError("\(localJournal): \(error)")
        }
        for index in theirs.keys.sorted() {
            guard let mine = local[index] else {
                f.problems.append("segment \(index), which the server holds, is missing from the local journal")
                continue
            }
            if mine != theirs[index] {
                let upTo = index == end.segment ? "up to byte \(end.offset)" : "as sealed"
                f.problems.append("segment \(index) \(upTo) differs from what the server received: the local journal was rewritten after it was shipped")
            }
        }
        f.ok = f.problems.isEmpty
        return f
    }
}
