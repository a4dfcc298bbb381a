"""Writes Kanshi's fleet tables as Parquet from the frames `kanshi` sends on standard input.

Started by KanshiFleet (ParquetSink): `python3 fleet_writer.py ROOT MODE`, MODE `replace` (a whole
recording: its earlier files are removed once the new ones are in place) or `append` (more of a
recording). Nothing is visible until the END frame: every file is written under a temporary name
and renamed at the end; without END (the exporter failed) the temporary files are removed and the
store is as it was.

A frame (little-endian):
    "KFR1" u8 table (1 blocks, 2 hashes, 255 END) u8[3] 0, u32 rows,
    u16 host length, u16 recording length, u16 day length, u16 0, host, recording, day,
    then per column of the table, in the order of COLUMNS: u64 byte length, the bytes.
The columns are arrays of fixed-width values; list columns come as u32 offsets (rows + 1) and the
values. The layout is the one FleetFormat.swift describes; FORMAT is its version.
"""
import os
import re
import struct
import sys
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

FORMAT = "1"
OPS = ["read", "write", "trim", "write-zeroes", "flush", "base", "base-zero"]
NO_DATA = -1

# name, arrow type, bytes per value ("list" for a list of float32), nullable rule
COLUMNS = {
    1: [("seq", pa.int64()), ("time_ns", pa.int64()), ("op", "op"), ("lba", pa.int64()), ("length", pa.int32()),
        ("entropy", pa.float32()), ("segment", pa.int32()), ("record_offset", pa.int64()),
        ("data_offset", pa.int64()), ("entropies", "list")],
    2: [("seq", pa.int64()), ("time_ns", pa.int64()), ("op", "op"), ("lba", pa.int64()), ("piece", pa.int8()),
        ("hash", pa.int64()), ("segment", pa.int32()), ("data_offset", pa.int64())],
}
TABLES = {1: "blocks", 2: "hashes"}
OP_TYPE = pa.dictionary(pa.int8(), pa.string())


def schema(table):
    fields = [pa.field("recording", pa.string(), nullable=False)]
    for name, t in COLUMNS[table]:
        if t == "op":
            fields.append(pa.field(name, OP_TYPE, nullable=False))
        elif t == "list":
            fields.append(pa.field(name, pa.list_(pa.float32())))
        else:
            fields.append(pa.field(name, t, nullable=name in ("entropy", "data_offset")))
    return pa.schema(fields, metadata={"kanshi.fleet.format": FORMAT, "kanshi.fleet.table": TABLES[table]})


def read_exact(stream, n):
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError
    return data


def column(stream, name, t, rows):
    (length,) = struct.unpack("<Q", read_exact(stream, 8))
    data = read_exact(stream, length)
    if t == "op":
        codes = pa.Array.from_buffers(pa.int8(), rows, [None, pa.py_buffer(data)])
        return pa.DictionaryArray.from_arrays(codes, pa.array(OPS))
    if t == "list":
        offsets = pa.Array.from_buffers(pa.int32(), rows + 1, [None, pa.py_buffer(data[: 4 * (rows + 1)])])
        values_bytes = data[4 * (rows + 1):]
        values = pa.Array.from_buffers(pa.float32(), len(values_bytes) // 4, [None, pa.py_buffer(values_bytes)])
        return pa.ListArray.from_arrays(offsets, values)
    return pa.Array.from_buffers(t, rows, [None, pa.py_buffer(data)])


def main():
    root, mode = sys.argv[1], sys.argv[2]
    stream = sys.stdin.buffer
    writers = {}  # (table, host, day, recording) -> (ParquetWriter, temp path, final path)
    touched = set()  # (host, recording)
    committed = False
    try:
        while True:
            head = stream.read(20)
            if not head:
                break
            if len(head) != 20 or head[:4] != b"KFR1":
                raise ValueError("fleet_writer: a frame does not start with KFR1")
            table = head[4]
            rows, hl, rl, dl = struct.unpack("<IHHH", head[8:18])
            if table == 255:
                committed = True
                break
            host = read_exact(stream, hl).decode()
            recording = read_exact(stream, rl).decode()
            day = read_exact(stream, dl).decode()
            arrays = [pa.array([recording] * rows, pa.string())] if rows else [pa.array([], pa.string())]
            for name, t in COLUMNS[table]:
                arrays.append(column(stream, name, t, rows))
            names = [f.name for f in schema(table)]
            if table == 1:
                # entropy: writes only; data_offset: records that carry data only
                op_codes = arrays[names.index("op")].indices
                arrays[names.index("entropy")] = masked(arrays[names.index("entropy")], pa.compute.equal(op_codes, 1))
            i = names.index("data_offset")
            arrays[i] = masked(arrays[i], pa.compute.not_equal(arrays[i], NO_DATA))
            batch = pa.RecordBatch.from_arrays(arrays, schema=schema(table))
            key = (table, host, day, recording)
            if key not in writers:
                seq0 = batch.column(names.index("seq"))[0].as_py() if rows else 0
                directory = os.path.join(root, TABLES[table], "host=" + host, "day=" + day)
                os.makedirs(directory, exist_ok=True)
                final = os.path.join(directory, "%s.s%d.parquet" % (recording, seq0))
                temp = os.path.join(directory, ".%s.%s.tmp" % (recording, uuid.uuid4().hex))
                writers[key] = (pq.ParquetWriter(temp, schema(table), compression="snappy"), temp, final)
                touched.add((host, recording))
            writers[key][0].write_batch(batch, row_group_size=1 << 20)
    except BaseException:
        committed = False
        for w, temp, _ in writers.values():
            try:
                w.close()
            except Exception:
                pass
            remove(temp)
        raise
    for w, _, _ in writers.values():
        w.close()
    if not committed:
        for _, temp, _ in writers.values():
            remove(temp)
        sys.stderr.write("fleet_writer: the export ended before its last frame; nothing was written\n")
        sys.exit(3)
    finals = {final for _, _, final in writers.values()}
    if mode == "replace":
        # The recording's earlier files, in both tables and every day, go once the new ones are written.
        for host, recording in touched:
            own = re.compile(re.escape(recording) + r"\.s[0-9]+\.parquet$")
            for table in TABLES.values():
                base = os.path.join(root, table, "host=" + host)
                if not os.path.isdir(base):
                    continue
                for day in os.listdir(base):
                    d = os.path.join(base, day)
                    for name in os.listdir(d):
                        p = os.path.join(d, name)
                        if own.match(name) and p not in finals:
                            os.remove(p)
    for _, temp, final in writers.values():
        os.replace(temp, final)
    print(len(writers))


def masked(array, valid):
    return pa.compute.if_else(valid, array, pa.scalar(None, array.type))


def remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    import pyarrow.compute  # noqa: F401  (pa.compute)
    main()
