import Foundation
import Testing
import KanshiJournal
@testable import KanshiFleet

@Suite struct FleetFormatTests {
    @Test func dayPartitionsAreUTCDates() {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd"
        f.timeZone = TimeZone(identifier: "UTC")
        f.locale = Locale(identifier: "en_US_POSIX")
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let ns = UInt64.random(in: 0...4_102_444_800_000_000_000, using: &rng)  // up to 2100
            #expect(FleetFormat.day(ns) == f.string(from: Date(timeIntervalSince1970: Double(ns / 1_000_000_000))), "\(ns)")
        }
        #expect(FleetFormat.day(0) == "1970-01-01")
        #expect(FleetFormat.day(951_782_400_000_000_000) == "2000-02-29")
    }

    @Test func namesAreThoseTheServerAccepts() {
        for good in ["lab-vm", "a", "host_1.example", String(repeating: "x", count: 100)] { #expect(RecordingName.isValid(good), "\(good)") }
        for bad in ["", ".hidden", "a/b", "host=1", "ü", "a b", String(repeating: "x", count: 101)] { #expect(!RecordingName.isValid(bad), "\(bad)") }
    }

    @Test func sparkMastersAreChecked() {
        for good in ["local", "local[1]", "local[2]", "local[*]", "spark://head:7077"] { #expect(FleetJob.validMaster(good), "\(good)") }
        for bad in ["", "local[0]", "local[x]", "yarn", "spark://head", "mesos://a:1"] { #expect(!FleetJob.validMaster(bad), "\(bad)") }
    }
}
