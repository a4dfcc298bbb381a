import Foundation

/// The fleet's tables: what `kanshi journal export --parquet` and the server
/// write, and what `kanshi fleet` jobs read.
///
/// Under a root directory (`DIR/fleet` of a server's data), Parquet files
/// partitioned by host and UTC day of the record's time:
/// ```
/// ROOT/blocks/host=H/day=YYYY-MM-DD/RECORDING.sFIRSTSEQ.parquet
/// ROOT/hashes/host=H/day=YYYY-MM-DD/RECORDING.sFIRSTSEQ.parquet
/// ```
/// `blocks`: one row per block record of the journal (reads, writes, trims,
/// write-zeroes, flushes, and the base records that keep a block's content
/// from before its first change): recording, seq, time_ns, op, lba (512-byte
/// sectors), length (bytes), entropy (writes: the mean of the stored 4 KiB
/// entropies), segment and record_offset (where the record is in the
/// journal), data_offset (where its data starts in that segment; null without
/// data), entropies (writes: one per 4 KiB piece of the request).
///
/// `hashes`: the sector hashes `kanshi search` uses (XXH3-64 of every whole
/// 512-byte sector of written and base data, and of every disk-aligned 4 KiB
/// block a record covers whole; non-probative data — one repeated byte,
/// zeros among them, or a short repeated pattern — left out): recording,
/// seq, time_ns, op, lba (the piece's first sector), piece (0–7: the sector
/// within its 4 KiB block; 8: the whole block), hash, segment, data_offset
/// (the piece's bytes, read back byte for byte from the journal).
///
/// Every file carries `kanshi.fleet.format` in its metadata; a job refuses
/// files of another format, naming them.
public enum FleetFormat {
    public static let version = "1"
    public static let blocksTable = "blocks"
    public static let hashesTable = "hashes"
    /// Table codes in the frames sent to the writer (fleet_writer.py).
    static let blocksCode: UInt8 = 1, hashesCode: UInt8 = 2, endCode: UInt8 = 255
    static let frameMagic = Array("KFR1".utf8)
    /// data_offset of a record without data.
    static let noData: Int64 = -1
    /// The whole-block piece.
    public static let wholeBlock: UInt8 = 8

    /// Operation codes, as the writer names them.
    public enum Op: UInt8, Sendable, CaseIterable {
        case read = 0, write, trim, writeZeroes, flush, base, baseZero
        public var name: String {
            switch self {
            case .read: "read"
            case .write: "write"
            case .trim: "trim"
            case .writeZeroes: "write-zeroes"
            case .flush: "flush"
            case .base: "base"
            case .baseZero: "base-zero"
            }
        }
    }

    /// "YYYY-MM-DD" of a time in ns since the epoch (UTC).
    public static func day(_ timeNs: UInt64) -> String {
        let days = Int64(timeNs / 1_000_000_000 / 86_400)
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        return String(format: "%04lld-%02lld-%02lld", y, m, d)
    }
}
