#!/usr/bin/env python3
"""Driven by tests/python_clients.rs: what a polyglot automation client with an observer
certificate can and cannot do. Prints one JSON document of findings; the Rust test asserts."""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "clients" / "python"))

import grpc  # noqa: E402

import aerodb_client  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", required=True)
    a = ap.parse_args()
    channel = aerodb_client.connect_profile(a.profile)
    control_pb2, control_grpc, kernel_pb2 = aerodb_client.modules()
    out = {}
    out["health"] = aerodb_client.health(channel)
    actor = control_grpc.ActorStub(channel)
    try:
        actor.RequestAction(
            control_pb2.RequestActionRequest(command=control_pb2.COMMAND_REQUEST_DEMOTION, target_node="n1", idempotency_key="py-1"),
            timeout=10,
        )
        out["actor"] = {"code": "OK"}
    except grpc.RpcError as e:
        out["actor"] = {"code": e.code().name, "error_info": aerodb_client.error_info(e)}
    observer = aerodb_client.Observer(channel)
    state = observer.cluster_state()
    out["cluster_id"] = state.cluster_id
    out["nodes"] = [
        {
            "node_id": n.node_id,
            "state": n.WhichOneof("state"),
            "role": kernel_pb2.Role.Name(n.snapshot.authority.role) if n.WhichOneof("state") == "snapshot" else None,
        }
        for n in state.nodes
    ]
    out["observed"] = [o.node_id for o in state.observed]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
