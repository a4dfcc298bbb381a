import CXGBoost

/// A failed XGBoost call, with XGBoost's own message.
public struct XGBoostError: Error, CustomStringConvertible {
    public var call: String
    public var message: String
    public var description: String { "XGBoost \(call) failed: \(message)" }
}

@inline(__always)
func check(_ call: String, _ rc: Int32) throws {
    guard rc == 0 else { throw XGBoostError(call: call, message: String(cString: XGBGetLastError())) }
}

/// A dense matrix handed to XGBoost; freed with the value.
final class DMatrix {
    let handle: DMatrixHandle

    init(values: [Float], rows: Int, columns: Int, labels: [Float]? = nil) throws {
        precondition(values.count == rows * columns)
        var h: DMatrixHandle?
        try values.withUnsafeBufferPointer { v in
            try check("XGDMatrixCreateFromMat", XGDMatrixCreateFromMat(v.baseAddress, bst_ulong(rows), bst_ulong(columns), .nan, &h))
        }
        handle = h!
        if let labels {
            try labels.withUnsafeBufferPointer { l in
                try check("XGDMatrixSetFloatInfo", XGDMatrixSetFloatInfo(handle, "label", l.baseAddress, bst_ulong(l.count)))
            }
        }
    }

    deinit { XGDMatrixFree(handle) }
}

/// A trained (or loaded) XGBoost model; freed with the value.
final class Booster {
    let handle: BoosterHandle

    /// An empty booster with the given parameters.
    init(params: [(String, String)], cache: [DMatrix] = []) throws {
        var h: BoosterHandle?
        var dms: [DMatrixHandle?] = cache.map { $0.handle }
        try check("XGBoosterCreate", XGBoosterCreate(&dms, bst_ulong(dms.count), &h))
        handle = h!
        for (k, v) in params { try check("XGBoosterSetParam(\(k))", XGBoosterSetParam(handle, k, v)) }
    }

    deinit { XGBoosterFree(handle) }

    func train(_ data: DMatrix, rounds: Int) throws {
        for i in 0..<rounds { try check("XGBoosterUpdateOneIter", XGBoosterUpdateOneIter(handle, Int32(i), data.handle)) }
    }

    /// Probability of the positive class for each row.
    func predict(_ data: DMatrix) throws -> [Float] {
        var len: bst_ulong = 0
        var out: UnsafePointer<Float>?
        try check("XGBoosterPredict", XGBoosterPredict(handle, data.handle, 0, 0, 0, &len, &out))
        return Array(UnsafeBufferPointer(start: out, count: Int(len)))
    }

    /// The model as XGBoost's JSON.
    func serialized() throws -> [UInt8] {
        var len: bst_ulong = 0
        var out: UnsafePointer<CChar>?
        try check("XGBoosterSaveModelToBuffer", XGBoosterSaveModelToBuffer(handle, "{\"format\": \"json\"}", &len, &out))
        return Array(UnsafeRawBufferPointer(start: out, count: Int(len)))
    }

    static func load(_ bytes: [UInt8]) throws -> Booster {
        let b = try Booster(params: [])
        try bytes.withUnsafeBytes { p in
            try check("XGBoosterLoadModelFromBuffer", XGBoosterLoadModelFromBuffer(b.handle, p.baseAddress, bst_ulong(p.count)))
        }
        return b
    }
}
