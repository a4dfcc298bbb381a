/// The NBD wire format (fixed newstyle), in one place.
///
/// Reference: the NBD protocol document (`proto.md` of the nbd project).
/// All integers on the wire are big-endian.
public enum NBD {
    // Handshake
    public static let initMagic: UInt64 = 0x4e42_444d_4147_4943  // "NBDMAGIC"
    public static let optionMagic: UInt64 = 0x4948_4156_454F_5054  // "IHAVEOPT"
    public static let optionReplyMagic: UInt64 = 0x0003_e889_0455_65a9

    public static let flagFixedNewstyle: UInt16 = 1 << 0
    public static let flagNoZeroes: UInt16 = 1 << 1
    public static let clientFlagFixedNewstyle: UInt32 = 1 << 0
    public static let clientFlagNoZeroes: UInt32 = 1 << 1

    public enum Option: UInt32 {
        case exportName = 1
        case abort = 2
        case list = 3
        case startTLS = 5
        case info = 6
        case go = 7
        case structuredReply = 8
        case listMetaContext = 9
        case setMetaContext = 10
        case extendedHeaders = 11
    }

    public enum Reply: UInt32 {
        case ack = 1
        case server = 2
        case info = 3
        case errUnsupported = 0x8000_0001
        case errPolicy = 0x8000_0002
        case errInvalid = 0x8000_0003
        case errPlatform = 0x8000_0004
        case errTLSRequired = 0x8000_0005
        case errUnknown = 0x8000_0006
        case errShutdown = 0x8000_0007
        case errBlockSizeRequired = 0x8000_0008
        case errTooBig = 0x8000_0009
    }

    public enum Info: UInt16 {
        case export = 0
        case name = 1
        case description = 2
        case blockSize = 3
    }

    // Transmission flags
    public static let hasFlags: UInt16 = 1 << 0
    public static let readOnly: UInt16 = 1 << 1
    public static let sendFlush: UInt16 = 1 << 2
    public static let sendFUA: UInt16 = 1 << 3
    public static let sendTrim: UInt16 = 1 << 5
    public static let sendWriteZeroes: UInt16 = 1 << 6
    public static let canMultiConn: UInt16 = 1 << 8
    public static let sendCache: UInt16 = 1 << 10

    // Transmission
    public static let requestMagic: UInt32 = 0x2560_9513
    public static let simpleReplyMagic: UInt32 = 0x6744_6698
    public static let requestHeaderLength = 28
    public static let simpleReplyHeaderLength = 16

    public enum Command: UInt16 {
        case read = 0
        case write = 1
        case disconnect = 2
        case flush = 3
        case trim = 4
        case cache = 5
        case writeZeroes = 6
        case blockStatus = 7
    }

    public static let commandFlagFUA: UInt16 = 1 << 0
    public static let commandFlagNoHole: UInt16 = 1 << 1

    public enum Errno: UInt32 {
        case ok = 0
        case perm = 1
        case io = 5
        case nomem = 12
        case inval = 22
        case nospc = 28
        case overflow = 75
        case notsup = 95
        case shutdown = 108
    }

    /// Block size constraints we advertise: 512-byte sectors, 4 KiB
    /// preferred, at most 32 MiB per request.
    public static let minimumBlockSize: UInt32 = 512
    public static let preferredBlockSize: UInt32 = 4096
    public static let maximumBlockSize: UInt32 = 32 << 20
    /// Option payloads larger than this end the connection.
    public static let maximumOptionLength: UInt32 = 64 << 10
    /// Write payloads larger than this (past the advertised maximum) end the
    /// connection instead of being read and refused.
    public static let maximumDiscardLength: UInt32 = 64 << 20
}
