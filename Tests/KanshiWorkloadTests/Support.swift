import Foundation
import KanshiSystem
@testable import KanshiWorkload

final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "kanshi-workload-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

func contents(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }

/// Builds a small corpus at `tmp/name`.
@discardableResult
func smallCorpus(_ tmp: TempDir, name: String = "corpus", seed: UInt64 = 7, sizeMiB: Int = 2) throws -> String {
    let dir = tmp.path + "/" + name
    _ = try CorpusBuilder(seed: seed, sizeMiB: sizeMiB).build(into: dir)
    return dir
}

func manifest(_ dir: String) throws -> Manifest {
    try Manifest.load(from: CorpusDirectory(path: dir, requireMarker: true))
}

func verify(_ dir: String) throws -> VerifyReport {
    try VerifyReport.check(CorpusDirectory(path: dir, requireMarker: true))
}

/// Shannon entropy in bits per byte.
func entropy<C: Collection>(_ bytes: C) -> Double where C.Element == UInt8 {
    var counts = [Int](repeating: 0, count: 256)
    for b in bytes { counts[Int(b)] += 1 }
    let n = Double(bytes.count)
    return counts.reduce(0.0) { acc, c in c == 0 ? acc : acc - Double(c) / n * log2(Double(c) / n) }
}

/// Runs a program; nil if it is not installed.
func runTool(_ path: String, _ args: [String]) -> Int32? {
    guard FileManager.default.isExecutableFile(atPath: path) else { return nil }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return nil }
    p.waitUntilExit()
    return p.terminationStatus
}

/// SHA-256 of every file under `path` (following nothing), by relative path.
func snapshot(_ path: String) -> [String: String] {
    var out: [String: String] = [:]
    let fm = FileManager.default
    guard let e = fm.enumerator(atPath: path) else { return out }
    while let rel = e.nextObject() as? String {
        let full = path + "/" + rel
        let attrs = try? fm.attributesOfItem(atPath: full)
        if attrs?[.type] as? FileAttributeType == .typeRegular { out[rel] = Manifest.digest(contents(full)) }
        if attrs?[.type] as? FileAttributeType == .typeSymbolicLink { out[rel] = "link -> " + ((try? fm.destinationOfSymbolicLink(atPath: full)) ?? "?") }
    }
    return out
}
