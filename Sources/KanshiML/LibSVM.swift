import CLibSVM
import Foundation

/// A failed libsvm call.
public struct LibSVMError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { "libsvm: \(message)" }
}

private func quiet(_: UnsafePointer<CChar>?) {}

/// An RBF-kernel C-SVM trained through libsvm and kept as libsvm's own model
/// text, so the trained model owns nothing that points into training data.
enum LibSVM {
    /// Trains on standardised rows (row-major, `columns` wide); labels 1 / 0.
    static func train(values: [Float], labels: [Float], columns: Int, c: Double = 10, gamma: Double? = nil) throws -> String {
        svm_set_print_string_function(quiet)
        let rows = labels.count
        // One node array per row: (index, value)… then (-1, 0).
        var nodes = [svm_node](repeating: svm_node(index: -1, value: 0), count: rows * (columns + 1))
        for r in 0..<rows {
            for k in 0..<columns { nodes[r * (columns + 1) + k] = svm_node(index: Int32(k + 1), value: Double(values[r * columns + k])) }
        }
        var y = labels.map(Double.init)
        var param = svm_parameter()
        param.svm_type = Int32(C_SVC)
        param.kernel_type = Int32(RBF)
        param.gamma = gamma ?? 1 / Double(columns)
        param.C = c
        param.cache_size = 200
        param.eps = 1e-3
        param.shrinking = 1
        param.probability = 0
        let tmp = NSTemporaryDirectory() + "kanshi-svm-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try nodes.withUnsafeMutableBufferPointer { n in
            try y.withUnsafeMutableBufferPointer { yp in
                // The problem's row pointers, and the problem itself, live until the model is saved.
                var rowsPtr = (0..<rows).map { Optional(n.baseAddress! + $0 * (columns + 1)) }
                try rowsPtr.withUnsafeMutableBufferPointer { xp in
                    var prob = svm_problem(l: Int32(rows), y: yp.baseAddress, x: xp.baseAddress)
                    if let err = svm_check_parameter(&prob, &param) { throw LibSVMError(message: String(cString: err)) }
                    var model: UnsafeMutablePointer<svm_model>? = svm_train(&prob, &param)
                    guard let trained = model else { throw LibSVMError(message: "svm_train returned no model") }
                    defer { svm_free_and_destroy_model(&model) }
                    guard svm_save_model(tmp, trained) == 0 else { throw LibSVMError(message: "cannot save the model to \(tmp)") }
                }
            }
        }
        guard let text = try? String(contentsOfFile: tmp, encoding: .utf8) else { throw LibSVMError(message: "cannot read back \(tmp)") }
        return text
    }

    /// Decision values turned into a score in (0, 1) for the positive class (label 1).
    static func predict(modelText: String, values: [Float], columns: Int) throws -> [Float] {
        let tmp = NSTemporaryDirectory() + "kanshi-svm-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try modelText.write(toFile: tmp, atomically: false, encoding: .utf8)
        var loaded: UnsafeMutablePointer<svm_model>? = svm_load_model(tmp)
        guard let model = loaded else { throw LibSVMError(message: "the model text is not a libsvm model") }
        defer { svm_free_and_destroy_model(&loaded) }
        var labels = [Int32](repeating: 0, count: 2)
        svm_get_labels(model, &labels)
        let sign: Double = labels[0] == 1 ? 1 : -1
        let rows = values.count / columns
        var out = [Float](repeating: 0, count: rows)
        var x = [svm_node](repeating: svm_node(index: -1, value: 0), count: columns + 1)
        var dec = [Double](repeating: 0, count: 1)
        for r in 0..<rows {
            for k in 0..<columns { x[k] = svm_node(index: Int32(k + 1), value: Double(values[r * columns + k])) }
            _ = svm_predict_values(model, &x, &dec)
            out[r] = Float(1 / (1 + exp(-sign * dec[0])))
        }
        return out
    }
}
