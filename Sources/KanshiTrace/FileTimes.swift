/// What a utime-family call sets, from its times argument as read from the caller's memory:
/// "now" (no times, or UTIME_NOW/UTIME_OMIT for both in utimensat) or "set" with the
/// modification time given ("mtime SECONDS", or "atime only"). The host tracer and the VM
/// sensor both decode with it, so a rule sees the same fields from either.
public enum FileTimes {
    public enum Call: Sendable {
        /// utime: struct utimbuf {actime, modtime}.
        case utime
        /// utimes, futimesat: struct timeval[2].
        case utimes
        /// utimensat: struct timespec[2].
        case utimensat

        /// The call of x86_64 number `nr` (utime, utimes, futimesat, utimensat), else nil.
        public init?(x86_64 nr: Int64) {
            switch nr {
            case SC.utime: self = .utime
            case SC.utimes, SC.futimesat: self = .utimes
            case SC.utimensat: self = .utimensat
            default: return nil
            }
        }
    }

    /// utimensat's tv_nsec values that give no time.
    static let utimeNow: Int64 = (1 << 30) - 1, utimeOmit: Int64 = (1 << 30) - 2

    /// Bytes of the times argument: words of `wordSize` bytes (8 on x86_64, 4 for 32-bit calls).
    public static func size(_ call: Call, wordSize: Int) -> Int { call == .utime ? 2 * wordSize : 4 * wordSize }

    /// `bytes` is nil when the argument is NULL (the times are now); `unreadable` when it could
    /// not be read.
    public static func describe(_ call: Call, bytes: [UInt8]?, wordSize: Int = 8, unreadable: Bool = false) -> (flags: String, reason: String?) {
        if unreadable { return ("set", "times unreadable") }
        guard let b = bytes else { return ("now", nil) }
        guard b.count >= size(call, wordSize: wordSize) else { return ("set", "times unreadable") }
        func word(_ i: Int) -> Int64 {
            b.withUnsafeBytes { wordSize == 8 ? $0.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)
                                              : Int64($0.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
        }
        let mtime: Int64?
        switch call {
        case .utime:
            mtime = word(1)
        case .utimensat:
            let atimeGiven = word(1) != utimeNow && word(1) != utimeOmit
            let mtimeGiven = word(3) != utimeNow && word(3) != utimeOmit
            guard atimeGiven || mtimeGiven else { return ("now", nil) }
            mtime = mtimeGiven ? word(2) : nil
        case .utimes:
            mtime = word(2)
        }
        return ("set", mtime.map { "mtime \($0)" } ?? "atime only")
    }
}
