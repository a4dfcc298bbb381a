/// A socket address read from a tracee, printable and judged local or external.
public struct SocketAddress: Sendable, CustomStringConvertible {
    public enum Family: Sendable { case unix, inet, inet6, netlink, other(UInt16) }
    public var family: Family
    public var text: String
    /// Loopback, unspecified (goes to this host), Unix, netlink.
    public var isLoopback: Bool

    /// Decodes sockaddr bytes (AF_UNIX, AF_INET, AF_INET6, AF_NETLINK).
    public init?(bytes b: [UInt8]) {
        guard b.count >= 2 else { return nil }
        let fam = UInt16(b[0]) | UInt16(b[1]) << 8
        switch fam {
        case 1:
            family = .unix
            let rest = Array(b.dropFirst(2))
            if rest.first == 0 {
                text = "unix:@" + String(decoding: rest.dropFirst().prefix { $0 != 0 }, as: UTF8.self)
            } else {
                text = "unix:" + String(decoding: rest.prefix { $0 != 0 }, as: UTF8.self)
            }
            isLoopback = true
        case 2:
            guard b.count >= 8 else { return nil }
            family = .inet
            let port = Int(b[2]) << 8 | Int(b[3])
            text = "\(b[4]).\(b[5]).\(b[6]).\(b[7]):\(port)"
            isLoopback = b[4] == 127 || (b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 0)
        case 10:
            guard b.count >= 24 else { return nil }
            family = .inet6
            let port = Int(b[2]) << 8 | Int(b[3])
            let a = Array(b[8..<24])
            let mapped = a[0..<10].allSatisfy { $0 == 0 } && a[10] == 0xff && a[11] == 0xff
            if mapped {
                text = "[::ffff:\(a[12]).\(a[13]).\(a[14]).\(a[15])]:\(port)"
                isLoopback = a[12] == 127 || a[12...15].allSatisfy { $0 == 0 }
            } else {
                var groups: [String] = []
                for i in stride(from: 0, to: 16, by: 2) { groups.append(String(Int(a[i]) << 8 | Int(a[i + 1]), radix: 16)) }
                text = "[\(SocketAddress.compress(groups))]:\(port)"
                isLoopback = a[0..<15].allSatisfy { $0 == 0 } && (a[15] == 1 || a[15] == 0)
            }
        case 16:
            family = .netlink
            text = "netlink"
            isLoopback = true
        default:
            family = .other(fam)
            text = "family:\(fam)"
            isLoopback = false
        }
    }

    public var description: String { text }

    public var isUnix: Bool { if case .unix = family { return true }; return false }
    public var isInet: Bool {
        switch family { case .inet, .inet6: return true; default: return false }
    }

    /// Off the machine: not Unix/netlink, and not loopback unless loopback counts as external.
    public func isExternal(loopbackExternal: Bool) -> Bool {
        switch family {
        case .unix, .netlink: return false
        case .inet, .inet6: return loopbackExternal || !isLoopback
        case .other: return true
        }
    }

    private static func compress(_ g: [String]) -> String {
        // Longest run of "0" groups becomes "::".
        var best = (start: -1, len: 0), i = 0
        while i < g.count {
            if g[i] == "0" {
                var j = i
                while j < g.count && g[j] == "0" { j += 1 }
                if j - i > best.len { best = (i, j - i) }
                i = j
            } else { i += 1 }
        }
        guard best.len > 1 else { return g.joined(separator: ":") }
        let head = g[0..<best.start].joined(separator: ":")
        let tail = g[(best.start + best.len)...].joined(separator: ":")
        return head + "::" + tail
    }
}
