"""An independent client (boto3) reads what the agent wrote: keys, both metadata fields, index JSON."""
import hashlib
import json
import os
import pwd
import signal
import subprocess
import time


def wait_for(cond, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def keys(s3, bucket):
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def test_boto3_reads_keys_metadata_and_index(tablesnap_bin, endpoint, s3, bucket, tmp_path):
    table = tmp_path / "data" / "ks" / "tbl-5a1c"
    table.mkdir(parents=True)
    proc = subprocess.Popen(
        [tablesnap_bin, "--endpoint-url", endpoint, "-n", "host1", "-p", "pfx/", bucket, str(table)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait until it watches the directory.
        line = ""
        deadline = time.monotonic() + 30
        while "watching" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        assert "watching" in line, "agent did not start watching"

        payloads = {"nb-1-big-Index.db": os.urandom(3000), "nb-1-big-Data.db": os.urandom(70000)}
        for name, body in payloads.items():
            tmp = table / (name + ".part-tmp")
            tmp.write_bytes(body)
            tmp.rename(table / name)

        data_key = f"pfx/host1:{table}/nb-1-big-Data.db"
        index_key = data_key + "-listdir.json"
        wait_for(lambda: index_key in keys(s3, bucket), what=index_key)

        assert sorted(keys(s3, bucket)) == sorted(
            [f"pfx/host1:{table}/nb-1-big-Index.db", data_key, index_key]
        )
        for name, body in payloads.items():
            obj = s3.get_object(Bucket=bucket, Key=f"pfx/host1:{table}/{name}")
            assert obj["Body"].read() == body
            meta = obj["Metadata"]
            assert meta["md5sum"] == hashlib.md5(body).hexdigest()
            stat = json.loads(meta["stat"])
            st = os.stat(table / name)
            assert stat["uid"] == st.st_uid and stat["gid"] == st.st_gid and stat["mode"] == st.st_mode
            assert stat["user"] == pwd.getpwuid(st.st_uid).pw_name

        index = s3.get_object(Bucket=bucket, Key=index_key)
        assert index["ContentType"] == "application/json"
        listing = json.loads(index["Body"].read())
        assert listing == {str(table): ["nb-1-big-Data.db", "nb-1-big-Index.db"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
