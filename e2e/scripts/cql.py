"""Runs CQL statements against the test Cassandra with the real Python driver (for the Rust tests).

    cql.py [--host H] [--port P]  < statements

One statement a line, run in order; consecutive INSERT lines run concurrently (at most 64 in
flight). For each statement that returns rows, one JSON line on stdout: the rows as lists of
values (text, numbers, null; other types as their str()). Exits non-zero on the first error.
"""

import argparse
import json
import os
import sys

from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
from cassandra.concurrent import execute_concurrent
from cassandra.policies import WhiteListRoundRobinPolicy


def value(v):
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return str(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default=os.environ.get("TABLESNAP_TEST_CASSANDRA_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("TABLESNAP_TEST_CASSANDRA_PORT", "9042")))
    ap.add_argument("--consistency", default="LOCAL_ONE", help="consistency level name, e.g. ALL")
    args = ap.parse_args()
    profile = ExecutionProfile(
        request_timeout=120,
        load_balancing_policy=WhiteListRoundRobinPolicy([args.host]),
        consistency_level=ConsistencyLevel.name_to_value[args.consistency],
    )
    cluster = Cluster(
        [args.host],
        port=args.port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
        connect_timeout=30,
        control_connection_timeout=30,
        max_schema_agreement_wait=60,
    )
    session = cluster.connect()
    lines = [l.strip() for l in sys.stdin.read().splitlines()]
    lines = [l for l in lines if l and not l.startswith("--")]
    i = 0
    while i < len(lines):
        if lines[i].upper().startswith("INSERT"):
            j = i
            while j < len(lines) and lines[j].upper().startswith("INSERT"):
                j += 1
            for ok, res in execute_concurrent(
                session, [(s, ()) for s in lines[i:j]], concurrency=64, raise_on_first_error=True
            ):
                pass
            i = j
            continue
        rs = session.execute(lines[i])
        if rs.column_names:
            print(json.dumps([[value(v) for v in row] for row in rs]), flush=True)
        i += 1
    cluster.shutdown()


if __name__ == "__main__":
    main()
