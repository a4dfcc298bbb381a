import Foundation
import KanshiCore
import Logging
@testable import KanshiJournal

/// A fresh temporary directory, removed when the value goes away.
final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "kanshi-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

let testLogger: Logger = {
    var l = Logger(label: "test")
    l.logLevel = .critical
    return l
}()

/// Appends one journaled write of `data` at `lba`.
@discardableResult
func appendWrite(_ w: JournalWriter, lba: UInt64, data: [UInt8], time: UInt64 = 1_000) throws -> UInt64 {
    let e = BlockEvent(operation: .write, timeNs: time, lba: lba, length: UInt32(data.count),
                       entropies: data.withUnsafeBytes { Entropy.perBlock($0) })
    let meta = BlockRecords.encodeMetadata(e)
    return try meta.withUnsafeBytes { m in
        try data.withUnsafeBytes { d in try w.append(kind: .blockWrite, timeNs: time, parts: [m, d]) }
    }
}

func segmentPath(_ dir: String, _ index: UInt64) -> String { dir + "/" + JournalFormat.segmentName(index) }

func fileBytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path)!) }

func writeBytes(_ path: String, _ bytes: [UInt8]) { _ = FileManager.default.createFile(atPath: path, contents: Data(bytes)) }

/// Offsets of every record in a segment, read from the headers.
func recordOffsets(_ path: String) -> [Int] {
    let b = fileBytes(path)
    var offsets: [Int] = []
    var o = JournalFormat.segmentHeaderLength
    while o + 8 <= b.count {
        offsets.append(o)
        let len = Int(b[o + 4]) | Int(b[o + 5]) << 8 | Int(b[o + 6]) << 16 | Int(b[o + 7]) << 24
        o += len
    }
    return offsets
}

/// Sequence numbers and LBAs of all writes, via the reader.
func writes(in dir: String) throws -> [(UInt64, [UInt8])] {
    var out: [(UInt64, [UInt8])] = []
    try JournalReader(directory: dir).forEachBlockEvent { e, data in
        if e.operation == .write { out.append((e.lba, Array(data))) }
    }
    return out
}
