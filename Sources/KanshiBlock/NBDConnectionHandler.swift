import KanshiCore
import KanshiSystem
import Logging
import NIOCore
import NIOPosix

/// Settings shared by every connection of one server.
struct NBDExport: Sendable {
    var backend: any BlockBackend
    /// The name listed by NBD_OPT_LIST; any name a client asks for is accepted.
    var name: String
    var description: String
    var handshakeTimeout: TimeAmount
    var threadPool: NIOThreadPool
}

/// Speaks the NBD protocol on one connection: the fixed-newstyle handshake,
/// then transmission. Bytes are accumulated and parsed in place, so a request
/// split across reads, or many requests in one read, are handled alike.
/// Malformed input gets the protocol's error reply where the protocol has
/// one and closes the connection (logged with the reason) where it has not.
final class NBDConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase { case clientFlags, options, transmission, closed }

    private let export: NBDExport
    private let connection: UInt32
    private var logger: Logger
    private(set) var phase = Phase.clientFlags
    private var noZeroes = false
    private var cumulation: ByteBuffer?
    private var pendingAsync = 0
    private var disconnectRequested = false
    private var handshakeTimer: Scheduled<Void>?
    /// Non-FUA writes parsed from the bytes at hand, done as one group
    /// before anything else (and at the end of each read).
    private var pendingWrites: [(Request, ByteBuffer)] = []
    private var pendingBytes = 0

    init(export: NBDExport, connection: UInt32, logger: Logger) {
        self.export = export
        self.connection = connection
        var l = logger
        l[metadataKey: "connection"] = "\(connection)"
        self.logger = l
    }

    // MARK: - Channel events

    func channelActive(context: ChannelHandlerContext) {
        let peer = context.remoteAddress.map { "\($0)" } ?? "unix"
        logger[metadataKey: "peer"] = "\(peer)"
        logger.info("client connected")
        export.backend.note("{\"event\":\"client-connect\",\"connection\":\(connection),\"peer\":\"\(peer.jsonEscaped)\"}")
        var b = context.channel.allocator.buffer(capacity: 18)
        b.writeInteger(NBD.initMagic)
        b.writeInteger(NBD.optionMagic)
        b.writeInteger(NBD.flagFixedNewstyle | NBD.flagNoZeroes)
        context.writeAndFlush(wrapOutboundOut(b), promise: nil)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        handshakeTimer = context.eventLoop.scheduleTask(in: export.handshakeTimeout) {
            let (handler, ctx) = loopBound.value
            if handler.phase != .transmission && handler.phase != .closed {
                handler.refuse(ctx, "handshake not finished within \(handler.export.handshakeTimeout.nanoseconds / 1_000_000_000) s")
            }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        phase = .closed
        logger.info("client disconnected")
        export.backend.note("{\"event\":\"client-disconnect\",\"connection\":\(connection)}")
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if cumulation == nil {
            cumulation = incoming
        } else {
            cumulation!.writeBuffer(&incoming)
        }
        process(context)
        if let c = cumulation {
            if c.readableBytes == 0 {
                cumulation = nil
            } else if c.readerIndex > 1 << 20 {
                cumulation!.discardReadBytes()
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.warning("connection error, closing", metadata: ["error": "\(error)"])
        phase = .closed
        context.close(promise: nil)
    }

    // MARK: - Parsing

    private func process(_ context: ChannelHandlerContext) {
        while phase != .closed, var buf = cumulation {
            let consumed: Bool
            switch phase {
            case .clientFlags: consumed = parseClientFlags(context, &buf)
            case .options: consumed = parseOption(context, &buf)
            case .transmission: consumed = parseRequest(context, &buf)
            case .closed: consumed = false
            }
            if phase != .closed { cumulation = buf }
            if !consumed { break }
        }
        commitPendingWrites(context)
    }

    private func parseClientFlags(_ context: ChannelHandlerContext, _ buf: inout ByteBuffer) -> Bool {
        guard let flags = buf.readInteger(as: UInt32.self) else { return false }
        let known = NBD.clientFlagFixedNewstyle | NBD.clientFlagNoZeroes
        if flags & ~known != 0 {
            refuse(context, "client sent unknown handshake flags 0x\(String(flags, radix: 16))")
        } else if flags & NBD.clientFlagFixedNewstyle == 0 {
            refuse(context, "client does not speak the fixed newstyle handshake (flags 0x\(String(flags, radix: 16)))")
        } else {
            noZeroes = flags & NBD.clientFlagNoZeroes != 0
            phase = .options
        }
        return true
    }

    private func parseOption(_ context: ChannelHandlerContext, _ buf: inout ByteBuffer) -> Bool {
        guard buf.readableBytes >= 16,
              let magic = buf.getInteger(at: buf.readerIndex, as: UInt64.self),
              let option = buf.getInteger(at: buf.readerIndex + 8, as: UInt32.self),
              let length = buf.getInteger(at: buf.readerIndex + 12, as: UInt32.self) else { return false }
        guard magic == NBD.optionMagic else {
            refuse(context, "bad option magic 0x\(String(magic, radix: 16)) (expected IHAVEOPT)")
            return true
        }
        guard length <= NBD.maximumOptionLength else {
            refuse(context, "option \(option) carries \(length) bytes, more than the \(NBD.maximumOptionLength) allowed")
            return true
        }
        guard buf.readableBytes >= 16 + Int(length) else { return false }
        buf.moveReaderIndex(forwardBy: 16)
        let data = buf.readSlice(length: Int(length))!
        handleOption(context, option: option, data: data)
        return true
    }

    private func parseRequest(_ context: ChannelHandlerContext, _ buf: inout ByteBuffer) -> Bool {
        guard buf.readableBytes >= NBD.requestHeaderLength else { return false }
        let r = buf.readerIndex
        let magic = buf.getInteger(at: r, as: UInt32.self)!
        let flags = buf.getInteger(at: r + 4, as: UInt16.self)!
        let type = buf.getInteger(at: r + 6, as: UInt16.self)!
        let cookie = buf.getInteger(at: r + 8, as: UInt64.self)!
        let offset = buf.getInteger(at: r + 16, as: UInt64.self)!
        let length = buf.getInteger(at: r + 24, as: UInt32.self)!
        guard magic == NBD.requestMagic else {
            refuse(context, "bad request magic 0x\(String(magic, radix: 16))")
            return true
        }
        let request = Request(flags: flags, type: type, cookie: cookie, offset: offset, length: length)
        if type == NBD.Command.write.rawValue {
            guard length <= NBD.maximumDiscardLength else {
                refuse(context, "write of \(length) bytes is far past the \(NBD.maximumBlockSize)-byte maximum")
                return true
            }
            guard buf.readableBytes >= NBD.requestHeaderLength + Int(length) else { return false }
            buf.moveReaderIndex(forwardBy: NBD.requestHeaderLength)
            let payload = buf.readSlice(length: Int(length))!
            handleRequest(context, request, payload: payload)
        } else {
            buf.moveReaderIndex(forwardBy: NBD.requestHeaderLength)
            handleRequest(context, request, payload: nil)
        }
        return true
    }

    // MARK: - Options

    private func handleOption(_ context: ChannelHandlerContext, option: UInt32, data: ByteBuffer) {
        var data = data
        switch NBD.Option(rawValue: option) {
        case .exportName:
            let name = data.readString(length: data.readableBytes) ?? ""
            logger.info("client chose export", metadata: ["export": "\(name)", "via": "NBD_OPT_EXPORT_NAME"])
            var b = context.channel.allocator.buffer(capacity: 10 + 124)
            b.writeInteger(export.backend.size)
            b.writeInteger(transmissionFlags)
            if !noZeroes { b.writeRepeatingByte(0, count: 124) }
            context.write(wrapOutboundOut(b), promise: nil)
            enterTransmission()
        case .abort:
            optionReply(context, option, .ack)
            context.flush()
            logger.info("client aborted the handshake")
            phase = .closed
            context.close(promise: nil)
        case .list:
            guard data.readableBytes == 0 else {
                optionReply(context, option, .errInvalid, text: "NBD_OPT_LIST takes no data")
                return
            }
            var payload = context.channel.allocator.buffer(capacity: 4 + export.name.utf8.count)
            payload.writeInteger(UInt32(export.name.utf8.count))
            payload.writeString(export.name)
            optionReply(context, option, .server, payload: payload)
            optionReply(context, option, .ack)
        case .info, .go:
            handleInfo(context, option: option, data: &data, go: option == NBD.Option.go.rawValue)
        default:
            let name = NBD.Option(rawValue: option).map { "\($0)" } ?? "unknown option \(option)"
            logger.notice("refused option", metadata: ["option": "\(name)"])
            optionReply(context, option, .errUnsupported, text: "\(name) is not supported by this server")
        }
    }

    private func handleInfo(_ context: ChannelHandlerContext, option: UInt32, data: inout ByteBuffer, go: Bool) {
        guard let nameLength = data.readInteger(as: UInt32.self), Int(nameLength) <= data.readableBytes - 2,
              let name = data.readString(length: Int(nameLength)),
              let count = data.readInteger(as: UInt16.self), data.readableBytes == Int(count) * 2 else {
            logger.notice("malformed NBD_OPT_INFO/GO", metadata: ["length": "\(data.capacity)"])
            optionReply(context, option, .errInvalid, text: "malformed NBD_OPT_\(go ? "GO" : "INFO") payload")
            return
        }
        var requested: Set<UInt16> = []
        for _ in 0..<count { requested.insert(data.readInteger(as: UInt16.self)!) }
        let alloc = context.channel.allocator
        var info = alloc.buffer(capacity: 12)
        info.writeInteger(NBD.Info.export.rawValue)
        info.writeInteger(export.backend.size)
        info.writeInteger(transmissionFlags)
        optionReply(context, option, .info, payload: info)
        var bs = alloc.buffer(capacity: 14)
        bs.writeInteger(NBD.Info.blockSize.rawValue)
        bs.writeInteger(NBD.minimumBlockSize)
        bs.writeInteger(NBD.preferredBlockSize)
        bs.writeInteger(NBD.maximumBlockSize)
        optionReply(context, option, .info, payload: bs)
        if requested.contains(NBD.Info.name.rawValue) {
            var n = alloc.buffer(capacity: 2 + name.utf8.count)
            n.writeInteger(NBD.Info.name.rawValue)
            n.writeString(name)
            optionReply(context, option, .info, payload: n)
        }
        if requested.contains(NBD.Info.description.rawValue) {
            var d = alloc.buffer(capacity: 2 + export.description.utf8.count)
            d.writeInteger(NBD.Info.description.rawValue)
            d.writeString(export.description)
            optionReply(context, option, .info, payload: d)
        }
        optionReply(context, option, .ack)
        if go {
            logger.info("client chose export", metadata: ["export": "\(name)", "via": "NBD_OPT_GO"])
            enterTransmission()
        }
    }

    private var transmissionFlags: UInt16 {
        var f = NBD.hasFlags | NBD.sendFlush | NBD.sendFUA | NBD.canMultiConn | NBD.sendCache
        if export.backend.isReadOnly { f |= NBD.readOnly } else { f |= NBD.sendTrim | NBD.sendWriteZeroes }
        return f
    }

    private func enterTransmission() {
        phase = .transmission
        handshakeTimer?.cancel()
        handshakeTimer = nil
    }

    private func optionReply(_ context: ChannelHandlerContext, _ option: UInt32, _ type: NBD.Reply,
                             payload: ByteBuffer? = nil, text: String? = nil) {
        var body = payload ?? context.channel.allocator.buffer(capacity: 0)
        if let text { body.writeString(text) }
        var b = context.channel.allocator.buffer(capacity: 20 + body.readableBytes)
        b.writeInteger(NBD.optionReplyMagic)
        b.writeInteger(option)
        b.writeInteger(type.rawValue)
        b.writeInteger(UInt32(body.readableBytes))
        b.writeBuffer(&body)
        context.write(wrapOutboundOut(b), promise: nil)
    }

    /// Ends the connection over input the protocol has no error reply for.
    func refuse(_ context: ChannelHandlerContext, _ reason: String) {
        logger.warning("closing connection: \(reason)")
        phase = .closed
        cumulation = nil
        context.close(promise: nil)
    }

    // MARK: - Transmission

    struct Request: Sendable {
        var flags: UInt16
        var type: UInt16
        var cookie: UInt64
        var offset: UInt64
        var length: UInt32
        var fua: Bool { flags & NBD.commandFlagFUA != 0 }
    }

    private func handleRequest(_ context: ChannelHandlerContext, _ req: Request, payload: ByteBuffer?) {
        if req.type == NBD.Command.write.rawValue && !req.fua && !export.backend.isReadOnly
            && checkRange(req, write: true) == nil {
            pendingWrites.append((req, payload!))
            pendingBytes += Int(req.length)
            if pendingWrites.count >= 64 || pendingBytes >= 32 << 20 { commitPendingWrites(context) }
            return
        }
        commitPendingWrites(context)
        guard let command = NBD.Command(rawValue: req.type) else {
            reject(context, req, .inval, "unknown command \(req.type)")
            return
        }
        let backend = export.backend
        let conn = connection
        switch command {
        case .disconnect:
            logger.info("client sent NBD_CMD_DISC")
            disconnectRequested = true
            closeIfDone(context)
        case .flush:
            runAsync(context, req) { try backend.flush(connection: conn) }
        case .read, .cache:
            if let why = checkRange(req, write: false) { reject(context, req, why.0, why.1); return }
            if command == .cache { reply(context, req.cookie, .ok); return }
            var b = context.channel.allocator.buffer(capacity: NBD.simpleReplyHeaderLength + Int(req.length))
            b.writeInteger(NBD.simpleReplyMagic)
            b.writeInteger(NBD.Errno.ok.rawValue)
            b.writeInteger(req.cookie)
            do {
                try b.writeWithUnsafeMutableBytes(minimumWritableBytes: Int(req.length)) { p in
                    try backend.read(into: UnsafeMutableRawBufferPointer(rebasing: p[0..<Int(req.length)]), at: req.offset, connection: conn)
                    return Int(req.length)
                }
            } catch {
                reject(context, req, errno(for: error), "read failed: \(error)")
                return
            }
            context.write(wrapOutboundOut(b), promise: nil)
        case .write:
            // Valid writes without FUA were grouped above; here are refusals and FUA writes.
            if backend.isReadOnly { reject(context, req, .perm, "write to a read-only export"); return }
            if let why = checkRange(req, write: true) { reject(context, req, why.0, why.1); return }
            do {
                try payload!.withUnsafeReadableBytes { try backend.write($0, at: req.offset, fua: true, connection: conn) }
            } catch {
                reject(context, req, errno(for: error), "write failed: \(error)")
                return
            }
            runAsync(context, req) { try backend.sync() }
        case .trim, .writeZeroes:
            if backend.isReadOnly { reject(context, req, .perm, "\(command) on a read-only export"); return }
            if let why = checkRange(req, write: true) { reject(context, req, why.0, why.1); return }
            do {
                if command == .writeZeroes {
                    try backend.writeZeroes(offset: req.offset, length: req.length, fua: req.fua, connection: conn)
                } else {
                    try backend.trim(offset: req.offset, length: req.length, fua: req.fua, connection: conn)
                }
            } catch {
                reject(context, req, errno(for: error), "\(command) failed: \(error)")
                return
            }
            if req.fua {
                runAsync(context, req) { try backend.sync() }
            } else {
                reply(context, req.cookie, .ok)
            }
        case .blockStatus:
            reject(context, req, .inval, "NBD_CMD_BLOCK_STATUS without a negotiated metadata context")
        }
    }

    /// Does the queued writes as one group and replies to each, in order.
    private func commitPendingWrites(_ context: ChannelHandlerContext) {
        guard !pendingWrites.isEmpty else { return }
        let writes = pendingWrites
        pendingWrites.removeAll(keepingCapacity: true)
        pendingBytes = 0
        do {
            try withReadablePointers(writes[...], []) { ptrs in
                try export.backend.write(batch: zip(ptrs, writes).map { ($0, $1.0.offset) }, connection: connection)
            }
            for (req, _) in writes { reply(context, req.cookie, .ok) }
        } catch {
            for (req, _) in writes { reject(context, req, errno(for: error), "write failed: \(error)") }
        }
    }

    private func withReadablePointers(_ writes: ArraySlice<(Request, ByteBuffer)>, _ acc: [UnsafeRawBufferPointer],
                                      _ body: ([UnsafeRawBufferPointer]) throws -> Void) throws {
        guard let first = writes.first else { return try body(acc) }
        try first.1.withUnsafeReadableBytes { try withReadablePointers(writes.dropFirst(), acc + [$0], body) }
    }

    /// Checks alignment, size limit and range; returns the error to send.
    private func checkRange(_ req: Request, write: Bool) -> (NBD.Errno, String)? {
        let min = UInt64(NBD.minimumBlockSize)
        if req.length == 0 { return (.inval, "zero-length request") }
        if req.offset % min != 0 || UInt64(req.length) % min != 0 {
            return (.inval, "offset \(req.offset) or length \(req.length) is not a multiple of \(min) bytes")
        }
        if req.length > NBD.maximumBlockSize {
            return (.inval, "length \(req.length) exceeds the \(NBD.maximumBlockSize)-byte maximum")
        }
        let size = export.backend.size
        if req.offset > size || UInt64(req.length) > size - req.offset {
            return (write ? .nospc : .inval, "request [\(req.offset), +\(req.length)) is past the end of the \(size)-byte disk")
        }
        return nil
    }

    private func errno(for error: Error) -> NBD.Errno {
        switch error {
        case BlockError.readOnly: return .perm
        case BlockError.system(let e) where e.errno == 28 || e.errno == 122: return .nospc
        case BlockError.journal(.system(let e)) where e.errno == 28 || e.errno == 122: return .nospc
        default: return .io
        }
    }

    private func reject(_ context: ChannelHandlerContext, _ req: Request, _ errno: NBD.Errno, _ why: String) {
        let command = NBD.Command(rawValue: req.type).map { "\($0)" } ?? "\(req.type)"
        logger.notice("request refused", metadata: ["command": "\(command)", "offset": "\(req.offset)",
                                                    "length": "\(req.length)", "errno": "\(errno)", "reason": "\(why)"])
        reply(context, req.cookie, errno)
    }

    private func reply(_ context: ChannelHandlerContext, _ cookie: UInt64, _ errno: NBD.Errno) {
        var b = context.channel.allocator.buffer(capacity: NBD.simpleReplyHeaderLength)
        b.writeInteger(NBD.simpleReplyMagic)
        b.writeInteger(errno.rawValue)
        b.writeInteger(cookie)
        context.write(wrapOutboundOut(b), promise: nil)
    }

    /// Runs blocking work that must reach stable storage (flush, FUA) on the
    /// thread pool, so the event loop keeps serving, and replies when done.
    private func runAsync(_ context: ChannelHandlerContext, _ req: Request, _ work: @escaping @Sendable () throws -> Void) {
        pendingAsync += 1
        let future = export.threadPool.runIfActive(eventLoop: context.eventLoop) { try work() }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        future.whenComplete { result in
            let (handler, ctx) = loopBound.value
            handler.pendingAsync -= 1
            guard handler.phase != .closed || handler.disconnectRequested else { return }
            switch result {
            case .success: handler.reply(ctx, req.cookie, .ok)
            case .failure(let error): handler.reject(ctx, req, handler.errno(for: error), "\(error)")
            }
            ctx.flush()
            handler.closeIfDone(ctx)
        }
    }

    private func closeIfDone(_ context: ChannelHandlerContext) {
        guard disconnectRequested, pendingAsync == 0, phase != .closed else { return }
        phase = .closed
        context.flush()
        context.close(promise: nil)
    }
}
