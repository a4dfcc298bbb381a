import Testing
@testable import KanshiCore

@Suite struct EntropyTests {
    @Test func constantBytesHaveZeroEntropy() {
        #expect(Entropy.normalized([UInt8](repeating: 0x41, count: 4096)) == 0)
        #expect(Entropy.normalized([UInt8]()) == 0)
    }

    @Test func everyByteValueOnceIsExactlyOne() {
        let all = (0..<4096).map { UInt8($0 % 256) }
        #expect(abs(Entropy.normalized(all) - 1.0) < 1e-12)
    }

    @Test func twoValuesGiveOneBitPerByte() {
        let half = (0..<4096).map { $0 % 2 == 0 ? UInt8(0) : UInt8(255) }
        #expect(abs(Entropy.normalized(half) - 1.0 / 8) < 1e-12)
    }

    @Test func randomDataIsNearOne() {
        var g = SystemRandomNumberGenerator()
        let bytes = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &g) }
        let e = Entropy.normalized(bytes)
        #expect(e > 0.99 && e <= 1.0)
        // 256-byte pieces of random data top out near 0.9, as the dataset's entropy #2 does.
        let e2 = bytes.withUnsafeBytes { Entropy.meanOf256BytePieces($0) }
        #expect(e2 > 0.85 && e2 < 0.93)
    }

    @Test func histogramMatchesNaiveCountOnOddLengths() {
        for length in [1, 7, 8, 9, 255, 4097] {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ $0 / 3) }
            var counts = [Int](repeating: 0, count: 256)
            for b in bytes { counts[Int(b)] += 1 }
            var h = 0.0
            for c in counts where c > 0 {
                let p = Double(c) / Double(length)
                h -= p * log2(p)
            }
            #expect(abs(Entropy.normalized(bytes) - h / 8) < 1e-9, "length \(length)")
        }
    }

    @Test func perBlockSplitsAtFourKiB() {
        var bytes = [UInt8](repeating: 0, count: 4096)
        bytes += (0..<4096).map { UInt8($0 % 256) }
        bytes += [1, 2]
        let e = bytes.withUnsafeBytes { Entropy.perBlock($0) }
        #expect(e.count == 3)
        #expect(e[0] == 0)
        #expect(abs(e[1] - 1) < 1e-6)
        #expect(abs(e[2] - 1.0 / 8) < 1e-6)
    }
}

@Suite struct CRC32CTests {
    @Test func knownVector() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8]()) == 0)
    }

    @Test func continuingEqualsWhole() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let whole = CRC32C.checksum(bytes)
        for cut in [0, 1, 7, 8, 500, 999, 1000] {
            let a = CRC32C.checksum(Array(bytes[..<cut]))
            #expect(CRC32C.checksum(Array(bytes[cut...]), continuing: a) == whole)
        }
    }
}

#if canImport(Glibc)
import func Glibc.log2
#endif

@Suite struct JSONTextTests {
    @Test func escapedStringsStayOneJSONString() {
        let nasty = "a\"b\\c\nd\u{1}e é/📀"
        #expect(nasty.jsonEscaped == "a\\\"b\\\\c\\nd\\u0001e é/📀")
        #expect("plain".jsonEscaped == "plain")
    }
}
