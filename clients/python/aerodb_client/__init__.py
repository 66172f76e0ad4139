"""A small read-only client for the AeroDB control plane (Observer service).

Stubs are generated from the repository's ``proto/`` at first use (grpcio-tools), so the client
always matches the contract it runs against. Connections use mutual TLS with a certificate whose
role is written in its SPIFFE URI SAN (an *observer* certificate is enough for everything here).

The service publishes no retry or hedging policy, and this client disables gRPC retries
explicitly: a read is cheap to re-issue by hand, and an automation client must never re-send an
Actor call on its own (see docs/automation.md).
"""

from __future__ import annotations

import importlib
import os
import pathlib
import sys
import tomllib

import grpc

_HERE = pathlib.Path(__file__).resolve().parent
_PROTO = _HERE.parent.parent.parent / "proto"
_GEN = _HERE / "_generated"
_PROTOS = ["aerodb/kernel/v1/kernel.proto", "aerodb/control/v1/control.proto"]

# No retries, no hedging, no transparent re-sends that a client did not ask for.
CHANNEL_OPTIONS = [("grpc.enable_retries", 0), ("grpc.max_receive_message_length", 16 << 20)]


def ensure_stubs(out_dir: pathlib.Path = _GEN) -> None:
    """Generates Python stubs from proto/ into ``out_dir`` unless they are up to date."""
    marker = out_dir / ".stamp"
    newest = max((_PROTO / p).stat().st_mtime for p in _PROTOS)
    if not (marker.exists() and marker.stat().st_mtime >= newest):
        from grpc_tools import protoc

        out_dir.mkdir(parents=True, exist_ok=True)
        args = ["protoc", f"-I{_PROTO}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *_PROTOS]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {_PROTO}")
        marker.touch()
    if str(out_dir) not in sys.path:
        sys.path.insert(0, str(out_dir))


def modules():
    """The generated modules: (control_pb2, control_pb2_grpc, kernel_pb2)."""
    ensure_stubs()
    control_pb2 = importlib.import_module("aerodb.control.v1.control_pb2")
    control_grpc = importlib.import_module("aerodb.control.v1.control_pb2_grpc")
    kernel_pb2 = importlib.import_module("aerodb.kernel.v1.kernel_pb2")
    return control_pb2, control_grpc, kernel_pb2


def load_profile(path: str) -> dict:
    """Reads an aerodbctl profile (TOML written by ``aerodb certs``). Relative ``ca``, ``cert``
    and ``key`` paths are resolved against the profile file's folder, as aerodbctl does."""
    with open(path, "rb") as f:
        p = tomllib.load(f)
    base = pathlib.Path(path).parent
    for k in ("ca", "cert", "key"):
        if k in p and not pathlib.Path(p[k]).is_absolute():
            p[k] = str(base / p[k])
    return p


def connect(endpoint: str, ca: str, cert: str, key: str) -> grpc.Channel:
    """A mutual-TLS channel. The server name is the endpoint's host (an IP or DNS name)."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=pathlib.Path(ca).read_bytes(),
        private_key=pathlib.Path(key).read_bytes(),
        certificate_chain=pathlib.Path(cert).read_bytes(),
    )
    return grpc.secure_channel(endpoint, creds, options=CHANNEL_OPTIONS)


def connect_profile(path: str) -> grpc.Channel:
    p = load_profile(path)
    return connect(p["endpoint"], p["ca"], p["cert"], p["key"])


def error_info(err: grpc.RpcError) -> dict | None:
    """The ``google.rpc.ErrorInfo`` of a failed call: reason, domain and metadata."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return {"reason": info.reason, "domain": info.domain, "metadata": dict(info.metadata)}
    return None


def health(channel: grpc.Channel, timeout: float = 10.0) -> int:
    """grpc.health.v1.Health/Check for the whole server; returns the status number (1 = SERVING).
    Encoded by hand so no health package is needed."""
    call = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    raw = call(b"", timeout=timeout)
    # HealthCheckResponse { ServingStatus status = 1; } : 0x08 <varint>
    return raw[1] if len(raw) >= 2 and raw[0] == 0x08 else 0


class Observer:
    """Read-only views. Every call is one RPC, never retried."""

    def __init__(self, channel: grpc.Channel, timeout: float = 10.0):
        control_pb2, control_grpc, _ = modules()
        self._pb = control_pb2
        self._stub = control_grpc.ObserverStub(channel)
        self._timeout = timeout

    def cluster_state(self):
        return self._stub.GetClusterState(self._pb.GetClusterStateRequest(), timeout=self._timeout)

    def replication_status(self):
        return self._stub.GetReplicationStatus(self._pb.GetReplicationStatusRequest(), timeout=self._timeout)

    def outcome(self, key: str):
        return self._stub.GetOutcome(self._pb.GetOutcomeRequest(idempotency_key=key), timeout=self._timeout)


def replica_lag(status) -> list[tuple[str, str, int]]:
    """(replica, as seen by, lag in entries) from a ReplicationStatus: each primary's view of its
    peers. Facts only: the kernel's positions, nothing inferred."""
    _, _, kernel_pb2 = modules()
    out = []
    for node in status.nodes:
        if node.WhichOneof("state") != "facts":
            continue
        facts = node.facts
        if facts.authority.role != kernel_pb2.ROLE_PRIMARY:
            continue
        for peer in facts.replication.peers:
            out.append((peer.node_id, node.node_id, peer.lag_entries))
    return out
