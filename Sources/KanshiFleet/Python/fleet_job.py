"""Kanshi's fleet jobs on Spark: `python3 fleet_job.py JOB --master MASTER --root ROOT ...`.

Started by `kanshi fleet` (KanshiFleet.FleetJob). MASTER is what Spark takes: local[N] on one
machine, spark://HOST:PORT on a cluster; the code is the same. ROOT holds the fleet tables
(FleetFormat.swift: blocks/ and hashes/, partitioned by host and day). A job only reads ROOT;
its answer goes to --out. Errors for the user are printed as one line starting "kanshi-fleet: ".

Jobs:
  search    the given hashes (a file's 512-byte sectors and 4 KiB pieces) broadcast-joined against
            every host's; per hit: host, recording, seq, time, LBA, piece, where its data lies, and
            when a later write or trim replaced it. Sector hashes found more than --max-occurrences
            times in one recording come back as a count only (too common to tell).
  features  the detectors' window features of every recording (fleet_features.py: the rows
            `kanshi journal features` gives on its journal), one row per window with I/O: host,
            recording, window_start_ns, written_bytes, then one float32 column per feature, as
            Parquet or JSON lines (--format). Prints, as JSON, each recording's number of
            windows and first and last window start.
"""
import argparse
import json
import os
import sys
import time
import uuid

FORMAT = "1"
TABLES = ("blocks", "hashes")


class UserError(Exception):
    pass


STARTED = time.time()


def progress(message):
    """With KANSHI_FLEET_TIMING=1: when each step ends, on standard error."""
    if os.environ.get("KANSHI_FLEET_TIMING") == "1":
        sys.stderr.write("kanshi-fleet-time: %6.1f s %s\n" % (time.time() - STARTED, message))


def check_format(root, hosts, tables=TABLES):
    """Refuses a store with a file of another format (its metadata names it), naming the file."""
    import pyarrow.parquet as pq

    for table in tables:
        base = os.path.join(root, table)
        if not os.path.isdir(base):
            raise UserError("%s: no %s table (export journals first: kanshi journal export --parquet, or kanshi server)" % (root, table))
        for d, _, files in os.walk(base):
            host = next((p[5:] for p in d[len(base):].split(os.sep) if p.startswith("host=")), None)
            if hosts and host not in hosts:
                continue
            for name in files:
                if not name.endswith(".parquet") or name.startswith("."):
                    continue
                path = os.path.join(d, name)
                try:
                    meta = pq.read_schema(path).metadata or {}
                except Exception as e:
                    raise UserError("%s: not a readable Parquet file (%s)" % (path, e))
                found = meta.get(b"kanshi.fleet.format", b"none").decode()
                if found != FORMAT:
                    raise UserError("%s: written in fleet format %s, this kanshi reads format %s; export that recording again (kanshi journal export --parquet)" % (path, found, FORMAT))


def session(master, app, partitions):
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if master.startswith("local"):
        # On one machine the driver's JVM does all the work, for one short job: the client compiler
        # alone (it warms up in a fraction of the time, and these jobs are mostly scans) and the
        # serial collector (no GC threads competing for the few cores).
        os.environ.setdefault("PYSPARK_SUBMIT_ARGS",
                              "--driver-memory 2g --driver-java-options '-XX:TieredStopAtLevel=1 -XX:+UseSerialGC' pyspark-shell")
    from pyspark.sql import SparkSession

    b = (SparkSession.builder.master(master).appName(app)
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.session.timeZone", "UTC")
         # host=007 is the host "007", not the number 7.
         .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
         .config("spark.sql.adaptive.enabled", "true"))
    if master.startswith("local"):
        b = b.config("spark.driver.host", "127.0.0.1").config("spark.sql.shuffle.partitions", str(partitions))
    try:
        spark = b.getOrCreate()
    except Exception as e:
        raise UserError("Spark cannot start (master %s): %s" % (master, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__))
    spark.sparkContext.setLogLevel("ERROR")
    progress("Spark started (%s)" % master)
    return spark


def local_cores(master):
    if master.startswith("local[") and master.endswith("]"):
        n = master[6:-1]
        return os.cpu_count() or 1 if n == "*" else int(n)
    return 1


def read_table(spark, root, table, hosts):
    from pyspark.sql import functions as F

    df = spark.read.option("basePath", os.path.join(root, table)).parquet(os.path.join(root, table))
    if hosts:
        df = df.where(F.col("host").isin(list(hosts)))
    return df


def search(args):
    import pyarrow.csv as pacsv
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    hosts = set(args.hosts.split(",")) if args.hosts else set()
    check_format(args.root, hosts)
    progress("format checked")
    wanted = []
    with open(args.hashes) as f:
        for line in f:
            h = json.loads(line)
            wanted.append((h["hash"], h["whole"]))
    spark = session(args.master, "kanshi-fleet-search", 4 * local_cores(args.master))
    try:
        want = spark.createDataFrame(sorted(set(wanted)), "hash long, whole boolean")
        # One scan of the hashes: per recording and wanted hash, how often it is there, and the
        # first (by sequence number) one more than --max-occurrences of its places.
        group = Window.partitionBy("host", "recording", "hash", "whole")
        hits = (read_table(spark, args.root, "hashes", hosts)
                .join(F.broadcast(want), "hash")
                .where((F.col("piece") == 8) == F.col("whole"))
                .withColumn("n", F.count(F.lit(1)).over(group))
                .withColumn("k", F.row_number().over(group.orderBy("seq", "lba")))
                .where(F.col("whole") | (F.col("k") <= args.max_occurrences + 1))
                .select("host", "recording", "hash", "whole", "seq", "time_ns", "op", "lba", "piece", "segment", "data_offset", "n")
                .cache())  # read by every branch below: one scan of the hashes
        common = hits.where(~F.col("whole") & (F.col("n") > args.max_occurrences)).select("host", "recording", "hash", F.col("n").alias("common")).distinct()
        found = hits.where(F.col("whole") | (F.col("n") <= args.max_occurrences)).drop("n").withColumn("blk", F.floor(F.col("lba") / 8))

        # When each found piece was replaced: the first later write, trim or write-zeroes of the
        # same recording that covers its sector (for a whole piece: any sector of its 4 KiB block).
        # Only the recordings and block ranges with hits are looked at.
        pieces = found.select("host", "recording", "blk", "seq", "lba", "piece").distinct()
        span = pieces.groupBy("host", "recording").agg(F.min("blk").alias("lo"), F.max("blk").alias("hi"))
        blocks = read_table(spark, args.root, "blocks", hosts).where(F.col("op").isin("write", "trim", "write-zeroes"))
        later = (blocks.select("host", "recording", F.col("seq").alias("wseq"), F.col("time_ns").alias("wtime"),
                               F.col("lba").alias("wlba"), F.ceil(F.col("length") / 512).alias("wsectors"))
                 .where(F.col("wsectors") > 0)
                 .join(F.broadcast(span), ["host", "recording"])
                 .withColumn("first", F.greatest(F.floor(F.col("wlba") / 8), F.col("lo")))
                 .withColumn("last", F.least(F.floor((F.col("wlba") + F.col("wsectors") - 1) / 8), F.col("hi")))
                 .where(F.col("first") <= F.col("last"))
                 .withColumn("blk", F.explode(F.sequence(F.col("first"), F.col("last"))))
                 .select("host", "recording", "blk", "wseq", "wtime", "wlba", "wsectors"))
        covering = (later.join(pieces, ["host", "recording", "blk"])
                    .where(F.col("wseq") > F.col("seq"))
                    .where((F.col("piece") == 8) | ((F.col("wlba") <= F.col("lba")) & (F.col("lba") < F.col("wlba") + F.col("wsectors"))))
                    .groupBy("host", "recording", "seq", "lba", "piece")
                    .agg(F.min_by("wtime", "wseq").alias("gone_ns")))
        result = (found.join(covering, ["host", "recording", "seq", "lba", "piece"], "left").drop("blk")
                  .unionByName(common, allowMissingColumns=True))
        # Arrow batches straight from the JVM (no row objects in Python), then one CSV for kanshi.
        table = result.toArrow()
        progress("hits and overwrites found: %d rows" % table.num_rows)
        pacsv.write_csv(table, args.out + ".tmp")
        os.replace(args.out + ".tmp", args.out)
        print(json.dumps({"rows": table.num_rows}))
    finally:
        spark.stop()


def features(args):
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    import fleet_features

    hosts = set(args.hosts.split(",")) if args.hosts else set()
    names = [n for n in args.features.split(",") if n]
    if not names:
        raise UserError("--features: give the feature names to compute, comma-separated")
    bad = fleet_features.unknown(names)
    if bad:
        raise UserError("--features: %s %s not a feature this kanshi computes (they are: %s)"
                        % (", ".join(bad), "is" if len(bad) == 1 else "are", ", ".join(fleet_features.ALL)))
    if args.window_ns < 1:
        raise UserError("--window-ns %d: a window is at least 1 ns" % args.window_ns)
    if not args.out:
        raise UserError("--out: give the file to write the features to")
    check_format(args.root, hosts, tables=("blocks",))
    spark = session(args.master, "kanshi-fleet-features", 4 * local_cores(args.master))
    try:
        # The executors import the port of the feature computation from here.
        spark.sparkContext.addPyFile(os.path.abspath(fleet_features.__file__))
        blocks = read_table(spark, args.root, "blocks", hosts)
        # Every recording, also those without a read or write (no window, as kanshi journal features).
        recordings = sorted((r["host"], r["recording"]) for r in blocks.select("host", "recording").distinct().collect())
        # Each recording whole in one partition, in journal order: what BlockTrace.fromJournal reads.
        ordered = (blocks.where(F.col("op").isin("read", "write"))
                   .select("host", "recording", "seq", "op", "time_ns", "lba", "length", "entropies")
                   .repartition("host", "recording")
                   .sortWithinPartitions("host", "recording", "seq"))
        window_ns = args.window_ns

        def per_partition(rows):
            import fleet_features as ff
            return ff.partition_tables(rows, window_ns, names)

        # Computed on every executor at once, kept, then handed to this process one partition at a time.
        tables = ordered.rdd.mapPartitions(per_partition).persist(StorageLevel.MEMORY_AND_DISK)
        tables.count()
        found = {}
        temp = os.path.join(os.path.dirname(os.path.abspath(args.out)), ".%s.%s.tmp" % (os.path.basename(args.out), uuid.uuid4().hex))
        try:
            with FeatureWriter(temp, args.format, names) as out:
                for host, recording, starts, written, values in tables.toLocalIterator():
                    found[(host, recording)] = out.add(host, recording, starts, written, values)
            os.replace(temp, args.out)
        except BaseException:
            remove(temp)
            raise
        tables.unpersist()
        summary = []
        for host, recording in sorted(set(recordings) | set(found)):
            windows, first, last = found.get((host, recording), (0, None, None))
            summary.append({"host": host, "recording": recording, "windows": windows, "first": first, "last": last})
        print(json.dumps({"rows": sum(r["windows"] for r in summary), "recordings": summary}))
    finally:
        spark.stop()


class FeatureWriter:
    """The features file: Parquet or JSON lines, a row per window (host, recording,
    window_start_ns, written_bytes, then the features as float32)."""

    def __init__(self, path, form, names):
        self.path, self.form, self.names = path, form, names
        self.parquet = None
        self.lines = None

    def __enter__(self):
        if self.form == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            fields = [pa.field("host", pa.string(), nullable=False), pa.field("recording", pa.string(), nullable=False),
                      pa.field("window_start_ns", pa.int64(), nullable=False), pa.field("written_bytes", pa.int64(), nullable=False)]
            fields += [pa.field(n, pa.float32(), nullable=False) for n in self.names]
            self.schema = pa.schema(fields, metadata={"kanshi.fleet.format": FORMAT, "kanshi.fleet.table": "features"})
            self.parquet = pq.ParquetWriter(self.path, self.schema, compression="snappy")
        else:
            self.lines = open(self.path, "w")
        return self

    def __exit__(self, *exc):
        if self.parquet is not None:
            self.parquet.close()
        if self.lines is not None:
            self.lines.close()
        return False

    def add(self, host, recording, starts, written, values):
        """One recording's rows (as fleet_features.partition_tables packs them); its number of
        windows and its first and last window start."""
        from array import array

        start = array("Q")
        start.frombytes(starts)
        n = len(start)
        if n == 0:
            return 0, None, None
        cols = len(self.names)
        v = array("f")
        v.frombytes(values)
        if self.parquet is not None:
            import pyarrow as pa

            arrays = [pa.array([host] * n, pa.string()), pa.array([recording] * n, pa.string()),
                      pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(starts)]),
                      pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(written)])]
            arrays += [pa.Array.from_buffers(pa.float32(), n, [None, pa.py_buffer(v[c::cols].tobytes())]) for c in range(cols)]
            self.parquet.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        else:
            w = array("Q")
            w.frombytes(written)
            values = v.tolist()
            for r in range(n):
                row = {"host": host, "recording": recording, "window_start_ns": start[r], "written_bytes": w[r]}
                row.update(zip(self.names, values[r * cols:(r + 1) * cols]))
                self.lines.write(json.dumps(row) + "\n")
        return n, start[0], start[n - 1]


def remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def main():
    p = argparse.ArgumentParser(prog="fleet_job.py")
    p.add_argument("job", choices=["search", "features", "check"])
    p.add_argument("--master", default="local[1]")
    p.add_argument("--root", required=True)
    p.add_argument("--hosts", default="")
    p.add_argument("--hashes")
    p.add_argument("--out")
    p.add_argument("--max-occurrences", type=int, default=256)
    p.add_argument("--window-ns", type=int, default=100_000_000)
    p.add_argument("--features", default="")
    p.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
    args = p.parse_args()
    try:
        if args.job == "search":
            search(args)
        elif args.job == "features":
            features(args)
        else:
            check_format(args.root, set(args.hosts.split(",")) if args.hosts else set())
    except UserError as e:
        sys.stderr.write("kanshi-fleet: %s\n" % e)
        sys.exit(2)


if __name__ == "__main__":
    main()
