import KanshiSystem

/// Everything that can go wrong building a corpus or running a workload.
public enum WorkloadError: Error, CustomStringConvertible, Sendable {
    /// The directory holds no corpus marker: workloads run only on a built corpus.
    case notACorpus(directory: String)
    /// The directory is not acceptable as a target (it is `/`, a symbolic link, missing, ...).
    case refusedDirectory(directory: String, reason: String)
    /// A path would lead outside the corpus directory (through `..` or a symbolic link).
    case outsideDirectory(path: String, directory: String)
    /// `corpus build` was given a directory that already holds files.
    case directoryNotEmpty(directory: String)
    /// The manifest or marker cannot be read.
    case badManifest(path: String, reason: String)
    /// A workload name that does not exist.
    case unknownWorkload(String)
    /// A workload was given an option it cannot use.
    case badOption(String)
    /// zlib returned an error code.
    case zlib(call: String, code: Int32)
    /// swift-crypto failed.
    case crypto(String)
    /// A system call failed.
    case system(SystemError)

    public var description: String {
        switch self {
        case .notACorpus(let d):
            return "\(d) holds no Kanshi corpus (no \(CorpusMarker.fileName)); workloads run only on a corpus: run `kanshi corpus build --dir \(d)` first"
        case .refusedDirectory(let d, let why):
            return "refusing to work on \(d): \(why)"
        case .outsideDirectory(let p, let d):
            return "\(p) leads outside \(d); refusing to touch it"
        case .directoryNotEmpty(let d):
            return "\(d) is not empty; a corpus is built only in an empty or new directory (to rebuild one, remove it first)"
        case .badManifest(let p, let why):
            return "\(p): \(why)"
        case .unknownWorkload(let n):
            return "no workload named \(n); `kanshi workload list` shows them"
        case .badOption(let m):
            return m
        case .zlib(let call, let code):
            return "zlib \(call) failed (code \(code))"
        case .crypto(let m):
            return "crypto: \(m)"
        case .system(let e):
            return e.description
        }
    }
}
