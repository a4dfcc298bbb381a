import Testing
@testable import KanshiExt4
