/// Where an Ethernet frame the guest sent is going, as far as egress filtering needs.
public struct EthernetFrame: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// ARP, and IPv6 neighbour discovery / router solicitation: link housekeeping, no payload.
        case link
        case ipv4, ipv6
        /// Anything else (another ethertype, IPv6 extension headers): cannot be attributed.
        case other
    }
    public var kind: Kind
    /// IP protocol: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6.
    public var proto: UInt8 = 0
    /// Destination address (4 or 16 bytes) and port (0 for ICMP).
    public var destination: [UInt8] = []
    public var port: UInt16 = 0
    /// Source port (TCP, UDP): with the destination it names one connection.
    public var sourcePort: UInt16 = 0
    /// A TCP segment with only SYN set (a connection attempt).
    public var tcpSyn = false

    static let ethernetHeader = 14
    static let ipv4: UInt16 = 0x0800, ipv6: UInt16 = 0x86dd, arp: UInt16 = 0x0806, vlan: UInt16 = 0x8100

    /// Parses the headers of `frame` (a raw Ethernet frame, no FCS).
    public init(_ frame: [UInt8]) {
        kind = .other
        guard frame.count >= Self.ethernetHeader else { return }
        let type = UInt16(frame[12]) << 8 | UInt16(frame[13])
        switch type {
        case Self.arp:
            kind = .link
        case Self.ipv4:
            let ip = Self.ethernetHeader
            guard frame.count >= ip + 20, frame[ip] >> 4 == 4 else { return }
            let ihl = Int(frame[ip] & 0xf) * 4
            kind = .ipv4
            proto = frame[ip + 9]
            destination = Array(frame[(ip + 16)..<(ip + 20)])
            // Multicast and broadcast stay on the link (slirp forwards neither).
            if destination[0] >= 224 { kind = .link; return }
            transport(frame, at: ip + ihl)
        case Self.ipv6:
            let ip = Self.ethernetHeader
            guard frame.count >= ip + 40, frame[ip] >> 4 == 6 else { return }
            kind = .ipv6
            proto = frame[ip + 6]
            destination = Array(frame[(ip + 24)..<(ip + 40)])
            // Link-scope multicast (neighbour discovery, MLD reports): housekeeping that stays on the link.
            if destination[0] == 0xff && destination[1] & 0x0f <= 2 { kind = .link; return }
            if proto == 58, frame.count > ip + 40, (133...137).contains(frame[ip + 40]) { kind = .link; return }
            if ![6, 17, 58].contains(proto) { kind = .other; return }  // extension headers: not followed
            transport(frame, at: ip + 40)
        default:
            return
        }
    }

    private mutating func transport(_ frame: [UInt8], at l4: Int) {
        guard proto == 6 || proto == 17, frame.count >= l4 + 4 else { return }
        sourcePort = UInt16(frame[l4]) << 8 | UInt16(frame[l4 + 1])
        port = UInt16(frame[l4 + 2]) << 8 | UInt16(frame[l4 + 3])
        if proto == 6, frame.count >= l4 + 14 { tcpSyn = frame[l4 + 13] & 0x12 == 0x02 }
    }

    /// `10.0.2.2:80`, `[fec0::2]:443`, `10.0.2.3 (icmp)`.
    public var destinationText: String {
        let host: String
        if destination.count == 4 {
            host = destination.map(String.init).joined(separator: ".")
        } else {
            var groups: [String] = []
            for i in stride(from: 0, to: destination.count - 1, by: 2) { groups.append(String(Int(destination[i]) << 8 | Int(destination[i + 1]), radix: 16)) }
            host = "[" + groups.joined(separator: ":") + "]"
        }
        switch proto {
        case 6: return "\(host):\(port) (tcp)"
        case 17: return "\(host):\(port) (udp)"
        default: return "\(host) (protocol \(proto))"
        }
    }
}

/// One connection as frames carry it: a destination and the guest's source port.
struct ConnectionKey: Hashable, Sendable {
    var flow: FlowKey
    var sourcePort: UInt16
}

/// A destination a socket sends to, in the form frames carry it.
struct FlowKey: Hashable, Sendable {
    var proto: UInt8
    var address: [UInt8]
    var port: UInt16

    /// From sockaddr bytes (AF_INET, AF_INET6; IPv4-mapped IPv6 becomes IPv4, as it goes on the wire).
    init?(sockaddr b: [UInt8], proto: UInt8) {
        guard b.count >= 8 else { return nil }
        let family = UInt16(b[0]) | UInt16(b[1]) << 8
        self.proto = proto
        port = proto == 6 || proto == 17 ? UInt16(b[2]) << 8 | UInt16(b[3]) : 0
        switch family {
        case 2: address = Array(b[4..<8])
        case 10:
            guard b.count >= 24 else { return nil }
            let a = Array(b[8..<24])
            address = a[0..<10].allSatisfy { $0 == 0 } && a[10] == 0xff && a[11] == 0xff ? Array(a[12..<16]) : a
        default: return nil
        }
    }

    init(frame: EthernetFrame) {
        proto = frame.proto
        address = frame.destination
        port = frame.proto == 6 || frame.proto == 17 ? frame.port : 0
    }
}
