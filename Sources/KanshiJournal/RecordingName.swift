/// Names of sensors, hosts, users and recordings: what the server takes in its URLs and keeps as
/// directory names, and what the fleet's tables use as partition names (host=NAME) and in file
/// names. Letters, digits, '.', '-' and '_' (ASCII); 1 to 100 of them; not starting with '.'.
public enum RecordingName {
    /// The rule, as an error message ends with it.
    public static let rule = "use 1 to 100 letters, digits, '.', '-' or '_' (not starting with '.')"
    static let maxLength = 100

    public static func isValid(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= maxLength && !s.hasPrefix(".")
            && s.utf8.allSatisfy { c in
                (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
                    || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
            }
    }
}
