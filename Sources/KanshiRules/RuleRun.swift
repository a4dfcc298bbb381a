import Foundation
import KanshiCore
import KanshiJournal
import KanshiTrace

/// Runs rules over a recorded behaviour log or journal, as they run live: the same engine, fed
/// the same events in the same order.
public enum RuleRun {
    /// Feeds every event of a behaviour log (JSON lines of `kanshi trace` or the VM sensor).
    public static func run(log path: String, engine: RuleEngine, progress: () -> Void = {}, _ onAlert: (RuleAlert) throws -> Void) throws {
        do {
            try BehaviourLogReader.read(path: path) { e in
                for a in engine.add(e) { try onAlert(a) }
                progress()
            }
        } catch let e as TraceError {
            throw RulesRunError("\(e)")
        }
    }

    /// Feeds every block record and note of a journal (block writes carry the mean entropy of their data).
    public static func run(journal directory: String, engine: RuleEngine, progress: () -> Void = {}, _ onAlert: (RuleAlert) throws -> Void) throws {
        let reader: JournalReader
        do {
            reader = try JournalReader(directory: directory)
        } catch {
            throw RulesRunError("\(directory): \(error)")
        }
        try reader.forEachRecord { r in
            guard let e = try event(r) else { return }
            for a in engine.add(e) { try onAlert(a) }
            progress()
        }
    }

    /// A journal record as a rule event (nil: a record the rules do not see, e.g. a checkpoint).
    public static func event(_ r: JournalRecord) throws -> RuleEvent? {
        if r.kind == .note {
            let text = String(decoding: r.payload, as: UTF8.self)
            let o = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
            return RuleEvent(note: text, event: o?["event"] as? String, time: r.timeNs, seq: r.sequence, segment: r.segment, offset: r.offset)
        }
        guard let (b, _) = try BlockRecords.decode(r) else { return nil }
        return event(b, of: r)
    }

    /// A block record already decoded, as a rule event.
    public static func event(_ b: BlockEvent, of r: JournalRecord) -> RuleEvent {
        RuleEvent(block: b.operation, lba: b.lba, length: b.length, entropy: b.meanEntropyBits, time: b.timeNs, seq: r.sequence,
                  segment: r.segment, offset: r.offset)
    }
}
