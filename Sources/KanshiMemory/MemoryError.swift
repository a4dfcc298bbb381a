/// What went wrong reading a guest's memory, naming what and where.
public enum MemoryError: Error, CustomStringConvertible, Equatable, Sendable {
    case badRAMSize(UInt64)
    case cannotShare(path: String, reason: String)
    case cannotOpen(path: String, reason: String)
    case notLiME(path: String, offset: UInt64, detail: String)
    case write(path: String, reason: String)
    case exists(path: String)
    /// The guest kernel could not be found in memory (what was looked for).
    case kernelNotFound(String)
    case kernelFacts(String)
    case noSuchProcess(Int32)
    case notMapped(pid: Int32, address: UInt64, why: String)
    case cannotSignal(pid: Int32, why: String)

    public var description: String {
        switch self {
        case .badRAMSize(let s):
            "guest RAM of \(s) bytes cannot be shared: give more than 1 MiB and less than 3584 MiB, in whole pages"
        case .cannotShare(let path, let reason):
            "cannot share the guest's RAM through \(path): \(reason)"
        case .cannotOpen(let path, let reason):
            "cannot open guest memory \(path): \(reason)"
        case .notLiME(let path, let offset, let detail):
            "\(path) at byte \(offset): not a LiME image: \(detail)"
        case .write(let path, let reason):
            "cannot write the memory image \(path): \(reason)"
        case .exists(let path):
            "\(path) already exists: a memory image is never overwritten; remove it or choose another name"
        case .kernelNotFound(let what):
            "the guest kernel was not found in memory: \(what)"
        case .kernelFacts(let what):
            "the guest kernel's image lacks what the memory sensor needs: \(what)"
        case .noSuchProcess(let pid):
            "no process \(pid) in the guest's task list"
        case .cannotSignal(let pid, let why):
            "cannot signal guest process \(pid): \(why)"
        case .notMapped(let pid, let address, let why):
            "process \(pid): 0x\(String(address, radix: 16)) \(why)"
        }
    }
}
