import Foundation

/// Facts read from a kernel image (which takes a second or two: decompressing it, its BTF
/// and kallsyms), kept as JSON beside the image and made again when the image changes (its
/// size, modification time and the facts' format are the key).
public enum KernelFactsCache {
    public static func cached<Facts: Codable>(_ name: String, guestDirectory: String, vmlinuz: String, format: Int,
                                              make: () throws -> Facts) throws -> Facts {
        let attrs = try? FileManager.default.attributesOfItem(atPath: vmlinuz)
        let key = "\(attrs?[.size] as? Int ?? -1) \((attrs?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1) format \(format)"
        let path = guestDirectory + "/" + name
        if let data = FileManager.default.contents(atPath: path), let c = try? JSONDecoder().decode(KernelFactsCacheEntry<Facts>.self, from: data), c.key == key {
            return c.facts
        }
        let facts = try make()
        if let data = try? JSONEncoder().encode(KernelFactsCacheEntry(key: key, facts: facts)) {
            try? data.write(to: URL(fileURLWithPath: path), options: .atomic)  // a cache: a read-only guest directory is fine
        }
        return facts
    }
}

/// One cache file: the key it was made for and the facts.
struct KernelFactsCacheEntry<Facts: Codable>: Codable {
    var key: String
    var facts: Facts
}
