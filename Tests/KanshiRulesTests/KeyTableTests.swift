import Testing
@testable import KanshiRules

/// The engine's table of open sequences and counts: what a dictionary would find, with keys
/// told apart by their bytes when hashes collide, through growth, removals and sweeps.
@Suite struct KeyTableTests {
    /// A key of one text and one number.
    static func key(_ text: String, _ n: Double, hash: UInt64? = nil) -> KeyBuffer {
        var k = KeyBuffer()
        k.append(text: text)
        k.append(number: n)
        if let hash { k.finish(hash: hash) } else { k.finish() }
        return k
    }

    /// A deterministic generator (the same operations on every run).
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state ^ (state >> 29)
        }
    }

    /// Random inserts, lookups, removals and sweeps, beside a dictionary holding the same.
    /// `collide`: every key gets one of a few hashes, so most lookups compare bytes.
    func runAgainstADictionary(collide: Bool, seed: UInt64) {
        var g = Generator(state: seed)
        let table = KeyTable<Int>()
        var model: [String: Int] = [:]
        func k(_ name: String) -> KeyBuffer {
            Self.key(name, 1, hash: collide ? UInt64(name.utf8.count % 3) << 32 | 7 : nil)
        }
        for step in 0..<20_000 {
            // (Fewer names when colliding: every lookup walks all of one hash's keys.)
            let name = "/f/\(UInt64.random(in: 0..<(collide ? 300 : 3_000), using: &g))"
            let key = k(name)
            defer { key.free() }
            switch UInt64.random(in: 0..<10, using: &g) {
            case 0..<5:
                if let at = table.find(key) {
                    #expect(model[name] != nil)
                    table.values[at] = step
                } else {
                    #expect(model[name] == nil, "\(name) not found")
                    table.insert(key, step)
                }
                model[name] = step
            case 5..<8:
                if let at = table.find(key) {
                    let (owned, value) = table.take(at)
                    #expect(owned.equals(key) && model.removeValue(forKey: name) == value)
                    owned.free()
                } else {
                    #expect(model[name] == nil)
                }
            case 8:
                #expect(table.find(key).map { table.values[$0] } == model[name])
            default:
                // A sweep: the older half goes (as expired sequences do).
                let cutoff = step - 2_000
                let dropped = table.removeAll { table.values[$0] < cutoff }
                let before = model.count
                model = model.filter { $0.value >= cutoff }
                #expect(dropped == before - model.count)
            }
            #expect(table.count == model.count)
        }
        // Everything left is found, with its value; the table holds nothing else.
        for (name, value) in model {
            let key = k(name)
            #expect(table.find(key).map { table.values[$0] } == value)
            key.free()
        }
        #expect((0..<table.count).map { table.values[$0] }.sorted() == model.values.sorted())
    }

    @Test func aTableFindsWhatADictionaryFinds() {
        runAgainstADictionary(collide: false, seed: 1)
    }

    @Test func keysWhoseHashesCollideAreToldApartByTheirBytes() {
        runAgainstADictionary(collide: true, seed: 2)
    }

    @Test func aTableGrowsThenShrinksWhenASweepEmptiesIt() {
        let table = KeyTable<Int>()
        let n = 10_000
        for i in 0..<n {
            let key = Self.key("k", Double(i))
            table.insert(key, i)
            key.free()
        }
        #expect(table.count == n && table.capacity >= n)
        for i in stride(from: 0, to: n, by: 7) {
            let key = Self.key("k", Double(i))
            #expect(table.find(key).map { table.values[$0] } == i)
            key.free()
        }
        #expect(table.removeAll { table.values[$0] >= 10 } == n - 10)
        #expect(table.count == 10 && table.capacity < n / 100)
        for i in 0..<20 {
            let key = Self.key("k", Double(i))
            #expect(table.find(key).map { table.values[$0] } == (i < 10 ? i : nil))
            key.free()
        }
    }

    /// Key bytes equal exactly when the parts (`KeyPart`) were equal.
    @Test func keysAreEqualWhenTheirPartsAre() {
        func key(_ build: (inout KeyBuffer) -> Void) -> KeyBuffer {
            var k = KeyBuffer()
            build(&k)
            k.finish()
            return k
        }
        let table = KeyTable<String>()
        let stored: [(String, KeyBuffer)] = [
            ("zero", key { $0.append(number: 0) }),
            ("text 1", key { $0.append(text: "1") }),
            ("none", key { $0.appendNone() }),
            ("ab|c", key { $0.append(text: "ab"); $0.append(text: "c") }),
        ]
        for (name, k) in stored { table.insert(k, name) }
        func found(_ k: KeyBuffer) -> String? {
            defer { k.free() }
            return table.find(k).map { table.values[$0] }
        }
        #expect(found(key { $0.append(number: -0.0) }) == "zero")
        #expect(found(key { $0.append(number: 1) }) == nil)
        #expect(found(key { $0.append(text: "") }) == nil)
        #expect(found(key { $0.append(text: "a"); $0.append(text: "bc") }) == nil)
        #expect(found(key { $0.append(text: "ab"); $0.append(text: "c") }) == "ab|c")
        // A NaN is equal to nothing, itself included: a key holding one is never found.
        let nan = key { $0.append(number: .nan) }
        table.insert(nan, "nan")
        #expect(table.find(nan) == nil && table.count == stored.count + 1)
        nan.free()
        for (_, k) in stored { k.free() }
    }

    /// A long key (past the buffer's first capacity) is kept whole.
    @Test func longKeysGrowTheBuffer() {
        let long = String(repeating: "/very/long/path", count: 100)
        let a = Self.key(long, 1), b = Self.key(long + "x", 1)
        let table = KeyTable<Int>()
        table.insert(a, 1)
        #expect(table.find(a) == 0 && table.find(b) == nil)
        a.free(); b.free()
    }
}
