#!/usr/bin/env python3
"""Polls cluster state with an observer certificate and prints the lag of each replica.

    python examples/poll_lag.py --profile certs/dev/observer.profile.toml --count 5 --interval 1

Read-only: it never calls the Actor service, and never retries a call on its own.
"""

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import aerodb_client  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", help="aerodbctl profile (endpoint and certificate paths)")
    ap.add_argument("--endpoint")
    ap.add_argument("--ca")
    ap.add_argument("--cert")
    ap.add_argument("--client-key", "--key", dest="client_key", help="client private key (--key: old spelling)")
    ap.add_argument("--count", type=int, default=1, help="polls (bounded)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    ap.add_argument("--json", action="store_true", help="one JSON line per poll")
    a = ap.parse_args()
    if a.profile:
        channel = aerodb_client.connect_profile(a.profile)
    else:
        channel = aerodb_client.connect(a.endpoint, a.ca, a.cert, a.client_key)
    observer = aerodb_client.Observer(channel)
    for i in range(a.count):
        state = observer.cluster_state()
        status = observer.replication_status()
        lag = aerodb_client.replica_lag(status)
        unreachable = [n.node_id for n in state.nodes if n.WhichOneof("state") == "unreachable"]
        if a.json:
            print(json.dumps({
                "poll": i,
                "nodes": [n.node_id for n in state.nodes],
                "unreachable": unreachable,
                "lag": [{"replica": r, "seen_by": p, "lag_entries": l} for (r, p, l) in lag],
            }), flush=True)
        else:
            print(f"poll {i}: cluster {state.cluster_id}, {len(state.nodes)} nodes, unreachable: {unreachable or '-'}")
            for replica, primary, entries in lag:
                print(f"  {replica}: {entries} entries behind {primary}")
        if i + 1 < a.count:
            time.sleep(a.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
