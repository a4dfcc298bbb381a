import Foundation

/// The mount table as the kernel shows it to this process (/proc/self/mountinfo).
enum MountTable {
    struct Entry {
        /// "major:minor" of the mounted device.
        var device: String
        var mountPoint: String
        var fileSystemType: String
    }

    static func entries() -> [Entry] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: false)
            guard f.count >= 10, let dash = f.firstIndex(of: "-"), dash + 1 < f.count else { return nil }
            return Entry(device: String(f[2]), mountPoint: unescape(f[4]), fileSystemType: String(f[dash + 1]))
        }
    }

    static func isMountPoint(_ path: String) -> Bool {
        entries().contains { $0.mountPoint == path }
    }

    /// Undoes mountinfo's octal escapes (\040 for a space, …).
    static func unescape(_ s: Substring) -> String {
        guard s.contains("\\") else { return String(s) }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
               let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
