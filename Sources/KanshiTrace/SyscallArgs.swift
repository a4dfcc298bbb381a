/// A system call's argument registers (at most six), held inline: decoding and logging a call
/// allocates nothing for them.
public struct SyscallArgs: MutableCollection, RandomAccessCollection, Sendable, Equatable, ExpressibleByArrayLiteral {
    public static let capacity = 6
    private var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)
    public private(set) var count: Int

    /// The first `count` values of `values` (at most six).
    public init<S: Sequence>(_ values: S) where S.Element == UInt64 {
        count = 0
        withUnsafeMutableBytes(of: &storage) { raw in
            let slots = raw.bindMemory(to: UInt64.self)
            for v in values where count < Self.capacity {
                slots[count] = v
                count += 1
            }
        }
    }

    public init(arrayLiteral elements: UInt64...) { self.init(elements) }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(i: Int) -> UInt64 {
        get {
            precondition(i >= 0 && i < count, "argument \(i) of \(count)")
            return withUnsafeBytes(of: storage) { $0.load(fromByteOffset: i * 8, as: UInt64.self) }
        }
        set {
            precondition(i >= 0 && i < count, "argument \(i) of \(count)")
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: newValue, toByteOffset: i * 8, as: UInt64.self) }
        }
    }

    public static func == (a: SyscallArgs, b: SyscallArgs) -> Bool { a.elementsEqual(b) }
}
