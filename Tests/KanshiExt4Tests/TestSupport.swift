import Foundation
import Testing
@testable import KanshiExt4

/// e2fsprogs (installed by scripts/setup.sh) builds the images and is the oracle.
enum Tools {
    static func find(_ name: String) -> String? {
        for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return nil
    }
    static let mkfs = find("mke2fs")
    static let fsck = find("e2fsck")
    static let debugfs = find("debugfs")
    static var available: Bool { mkfs != nil && debugfs != nil && fsck != nil }
    static let missingReason: Comment = "needs mke2fs and debugfs from e2fsprogs (scripts/setup.sh installs them)"
}

struct CommandFailed: Error, CustomStringConvertible {
    var command: String
    var status: Int32
    var output: String
    var description: String { "\(command) exited \(status): \(output)" }
}

/// Runs a program and returns its standard output; throws on a non-zero exit.
@discardableResult
func run(_ path: String, _ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read before waiting so a large output cannot block the child.
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    guard p.terminationStatus == 0 else {
        throw CommandFailed(command: ([path] + args).joined(separator: " "), status: p.terminationStatus,
                            output: text + String(decoding: errData, as: UTF8.self))
    }
    return text
}

/// Runs debugfs commands (read-only unless `write`) on an image.
@discardableResult
func debugfs(_ image: String, _ command: String, write: Bool = false) throws -> String {
    try run(Tools.debugfs!, (write ? ["-w"] : []) + ["-R", command, image])
}

/// A fresh temporary directory, removed when the value goes away.
final class TempDir: @unchecked Sendable {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "kanshi-ext4-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Deterministic pseudo-random bytes.
func pseudoRandom(_ count: Int, seed: UInt64) -> [UInt8] {
    var x = seed | 1
    var out = [UInt8](repeating: 0, count: count)
    out.withUnsafeMutableBytes { p in
        let words = p.bindMemory(to: UInt64.self)
        for i in words.indices {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            words[i] = x
        }
    }
    return out
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

func mkdirs(_ path: String) {
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
}

/// Writes `count` islands of `island` bytes every `stride` bytes, leaving
/// holes between them, so the file needs one extent per island.
func writeSparseIslands(_ path: String, count: Int, island: Int, stride: Int) {
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    let h = FileHandle(forWritingAtPath: path)!
    let data = Data(pseudoRandom(island, seed: 99))
    for i in 0..<count {
        try! h.seek(toOffset: UInt64(i * stride))
        h.write(data)
    }
    try! h.close()
}

/// The source tree copied into every test image (paths relative to the root).
final class SourceTree: Sendable {
    let root: String
    /// Relative paths of regular files.
    let files: [String]
    let directories: [String]
    let symlinks: [String: String]

    init(at root: String, htreeEntries: Int = 2000) {
        self.root = root
        var files: [String] = []
        var dirs: [String] = []
        func file(_ rel: String, _ bytes: [UInt8]) { writeFile(root + "/" + rel, bytes); files.append(rel) }
        func dir(_ rel: String) { mkdirs(root + "/" + rel); dirs.append(rel) }
        mkdirs(root)
        file("small.txt", Array("hello, ext4\n".utf8))
        file("empty", [])
        file("tiny", [0x42])
        dir("dir"); dir("dir/a"); dir("dir/a/b"); dir("dir/a/b/c")
        file("dir/a/b/c/deep.txt", Array(String(repeating: "deep ", count: 1000).utf8))
        file("dir/mid.bin", pseudoRandom(300_000, seed: 7))
        file("big.bin", pseudoRandom(9 << 20, seed: 1))
        writeSparseIslands(root + "/sparse.bin", count: 2000, island: 4096, stride: 8192)
        files.append("sparse.bin")
        // One byte at 70 MiB: a triple-indirect block on 1 KiB ext2.
        writeSparseIslands(root + "/far.bin", count: 1, island: 1, stride: 0)
        let h = FileHandle(forWritingAtPath: root + "/far.bin")!
        try! h.seek(toOffset: 70 << 20)
        h.write(Data([0x5A]))
        try! h.close()
        files.append("far.bin")
        file("prealloc", [])
        dir("htree")
        for i in 0..<htreeEntries { file(String(format: "htree/entry-with-a-longish-name-%05d", i), Array("file \(i)\n".utf8)) }
        dir("links")
        let long = String(repeating: "x", count: 100)
        var symlinks: [String: String] = [:]
        symlinks["links/short"] = "../small.txt"
        symlinks["links/long"] = "../" + long
        for (k, v) in symlinks { try! FileManager.default.createSymbolicLink(atPath: root + "/" + k, withDestinationPath: v) }
        self.files = files
        self.directories = dirs
        self.symlinks = symlinks
    }

    func bytes(_ rel: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: root + "/" + rel)!) }
}

/// One image built with mke2fs from the source tree.
struct TestImage: Sendable {
    var name: String
    var path: String
    var blockSize: Int
}

/// Images shared by the tests (built once per test run).
final class Fixtures: Sendable {
    /// Lives as long as the test process (a global is never deinitialised),
    /// so it is named after the process and earlier runs' leftovers are removed.
    let dir: String
    let tree: SourceTree
    let images: [TestImage]

    static let specs: [(name: String, args: [String])] = [
        ("ext4-4k", ["-t", "ext4", "-b", "4096"]),
        ("ext4-1k", ["-t", "ext4", "-b", "1024"]),
        ("ext2-1k", ["-t", "ext2", "-b", "1024"]),
        ("ext3-4k", ["-t", "ext3", "-b", "4096"]),
        ("ext4-noextent", ["-t", "ext4", "-b", "4096", "-O", "^extent,^64bit"]),
        ("ext4-inline", ["-t", "ext4", "-b", "4096", "-O", "inline_data"]),
        ("ext4-metabg", ["-t", "ext4", "-b", "1024", "-O", "meta_bg,^resize_inode"]),
        ("ext4-32bit", ["-t", "ext4", "-b", "4096", "-O", "^64bit,^flex_bg"]),
        // Quota inodes and the orphan file are in use but reachable by no path.
        ("ext4-quota", ["-t", "ext4", "-b", "4096", "-O", "quota,sparse_super2,orphan_file"]),
    ]

    init() throws {
        let prefix = "kanshi-ext4-fixtures-"
        let tmp = NSTemporaryDirectory()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? [] where name.hasPrefix(prefix) {
            if let pid = Int32(name.dropFirst(prefix.count)), kill(pid, 0) != 0 {
                try? FileManager.default.removeItem(atPath: tmp + name)
            }
        }
        dir = tmp + prefix + "\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        mkdirs(dir)
        tree = SourceTree(at: dir + "/src")
        var images: [TestImage] = []
        for spec in Self.specs {
            let path = "\(dir)/\(spec.name).img"
            try run(Tools.mkfs!, ["-q", "-F"] + spec.args + ["-E", "root_owner=0:0", "-d", tree.root, path, "160M"])
            // Unwritten extents, written by debugfs the way fallocate(2) would.
            if spec.name.hasPrefix("ext4") && !spec.name.contains("noextent") {
                try debugfs(path, "fallocate /prealloc 0 99", write: true)
            }
            // mke2fs -d links entries linearly; e2fsck -D builds the htree indexes.
            try fsckOptimizeDirectories(path)
            let bs = spec.args[spec.args.firstIndex(of: "-b")! + 1]
            images.append(TestImage(name: spec.name, path: path, blockSize: Int(bs)!))
        }
        self.images = images
    }

    nonisolated(unsafe) static var shared: Result<Fixtures, Error>? = nil
    static let lock = NSLock()

    /// The shared fixtures, built on first use.
    static func get() throws -> Fixtures {
        lock.lock()
        defer { lock.unlock() }
        if shared == nil { shared = Result { try Fixtures() } }
        return try shared!.get()
    }
}

/// `e2fsck -fyD`: exit status 1 means "file system modified", which is the point.
func fsckOptimizeDirectories(_ image: String) throws {
    do {
        try run(Tools.fsck!, ["-fyD", image])
    } catch let e as CommandFailed where e.status == 1 {
    }
}

func open(_ image: TestImage) throws -> Ext4FileSystem {
    try Ext4FileSystem(reader: try FileImageReader(path: image.path))
}
