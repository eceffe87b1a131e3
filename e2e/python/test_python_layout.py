"""A bucket in the Python tablesnap's exact layout, written here with boto3 (index uploaded before
its data, a `backups` directory entry in the listing, no prefix, one object without md5sum
metadata), restored by tableslurp and read by tablechop."""
import hashlib
import json
import os
import stat
import subprocess
import time

HOST = "pyhost"
TABLE = "/var/lib/cassandra/data/ks/tbl-5a1c0000"


def blob(n, seed):
    return bytes((i * 31 + seed * 7) % 251 for i in range(n))


def py_stat(mode):
    # What the Python tool's json.dumps of os.stat fields gives.
    return json.dumps({"uid": 0, "gid": 0, "mode": mode, "user": "root", "group": "root"})


def put_file(s3, bucket, name, data, mode=0o100644, md5_meta=True):
    meta = {"stat": py_stat(mode)}
    if md5_meta:
        meta["md5sum"] = hashlib.md5(data).hexdigest()
    s3.put_object(Bucket=bucket, Key=f"{HOST}:{TABLE}/{name}", Body=data, Metadata=meta)


def put_index(s3, bucket, data_name, names):
    s3.put_object(
        Bucket=bucket,
        Key=f"{HOST}:{TABLE}/{data_name}-listdir.json",
        Body=json.dumps({TABLE: names}).encode(),
        ContentType="application/json",
    )


def next_second():
    start = int(time.time())
    deadline = time.monotonic() + 5
    while int(time.time()) <= start:
        assert time.monotonic() < deadline
        time.sleep(0.02)


GEN1 = {"nb-1-big-Data.db": blob(5000, 1), "nb-1-big-Index.db": blob(700, 2), "nb-1-big-TOC.txt": blob(90, 3)}
GEN2 = {"nb-2-big-Data.db": blob(6000, 4), "nb-2-big-Index.db": blob(800, 5)}


def python_bucket(s3, bucket):
    # The Python tool uploads the index first, then the file; its listing names the backups
    # directory too. The TOC has no md5sum metadata (older versions): its ETag is its MD5.
    put_index(s3, bucket, "nb-1-big-Data.db", ["backups"] + sorted(GEN1))
    for name, data in GEN1.items():
        put_file(s3, bucket, name, data, mode=0o100600 if name.endswith("Data.db") else 0o100644,
                 md5_meta=not name.endswith("TOC.txt"))
    next_second()
    put_index(s3, bucket, "nb-2-big-Data.db", ["backups"] + sorted({**GEN1, **GEN2}))
    for name, data in GEN2.items():
        put_file(s3, bucket, name, data)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_python_layout_restores(tableslurp_bin, endpoint, s3, bucket, tmp_path):
    python_bucket(s3, bucket)
    target = tmp_path / "newest"
    r = run([tableslurp_bin, "--endpoint-url", endpoint, "-n", HOST, bucket, TABLE, str(target)])
    assert r.returncode == 0, r.stdout + r.stderr
    want = {**GEN1, **GEN2}
    assert sorted(os.listdir(target)) == sorted(want)
    for name, data in want.items():
        assert (target / name).read_bytes() == data, name
    assert stat.S_IMODE(os.stat(target / "nb-1-big-Data.db").st_mode) == 0o600
    assert "1 directory entries skipped" in r.stdout, r.stdout
    assert "0 failed" in r.stdout, r.stdout

    # The older file set, by the name of its Data.db.
    older = tmp_path / "older"
    r = run([tableslurp_bin, "--endpoint-url", endpoint, "-n", HOST, "-f", "nb-1-big-Data.db",
             bucket, TABLE, str(older)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert {n: (older / n).read_bytes() for n in os.listdir(older)} == GEN1


def test_python_layout_corrupt_object_is_named(tableslurp_bin, endpoint, s3, bucket, tmp_path):
    python_bucket(s3, bucket)
    # Same size, other bytes, the recorded MD5 of the original.
    bad = bytearray(GEN2["nb-2-big-Index.db"])
    bad[10] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=f"{HOST}:{TABLE}/nb-2-big-Index.db", Body=bytes(bad),
                  Metadata={"stat": py_stat(0o100644),
                            "md5sum": hashlib.md5(GEN2["nb-2-big-Index.db"]).hexdigest()})
    target = tmp_path / "t"
    r = run([tableslurp_bin, "--endpoint-url", endpoint, "-n", HOST, bucket, TABLE, str(target)])
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{HOST}:{TABLE}/nb-2-big-Index.db" in r.stderr
    assert sorted(os.listdir(target)) == sorted(set(GEN1) | {"nb-2-big-Data.db"})


def test_tablechop_reads_python_layout(tablechop_bin, endpoint, s3, bucket):
    python_bucket(s3, bucket)
    later = str(int(time.time()) + 30 * 86400)
    r = run([tablechop_bin, "--endpoint-url", endpoint, "-n", HOST, "-d", "-l", "--now", later,
             bucket, "/var/lib/cassandra/data", "7"])
    assert r.returncode == 0, r.stdout + r.stderr
    # Only the superseded index goes: the newest one lists every file.
    assert [l for l in r.stdout.splitlines() if l.startswith("would delete ")] == [
        f"would delete {HOST}:{TABLE}/nb-1-big-Data.db-listdir.json"
    ], r.stdout
    assert len(s3.list_objects_v2(Bucket=bucket)["Contents"]) == 7
