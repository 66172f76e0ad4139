#!/usr/bin/env python3
"""An RFC 6962 / RFC 9162 proof checker that shares no code with AeroDB's writer.

Reads JSON on stdin:
  {"note": "<C2SP checkpoint note>",
   "inclusion": [{"seq", "tree_size", "record_payload" (hex), "hashes": [hex]}],
   "consistency": [{"first_note": "<an earlier checkpoint note>", "hashes": [hex]}]}
and prints JSON: {"size", "root", "inclusion": [bool], "consistency": [bool]}.

The root comes from the checkpoint note's text (origin line, tree size, base64 root); each
inclusion proof is checked from the leaf hash it recomputes from the record's bytes; each
consistency proof is checked from an earlier note's size and root to this note's. Standard
library only (the notes' Ed25519 signatures are checked by the Rust side).
"""
import base64
import hashlib
import json
import sys


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def parse_note(note: str):
    text, _, sigs = note.rpartition("\n\n")
    lines = text.split("\n")
    if len(lines) < 3 or not sigs.startswith("\u2014 "):
        raise ValueError("not a signed checkpoint note")
    size = int(lines[1])
    if str(size) != lines[1]:
        raise ValueError("tree size with leading zeros")
    root = base64.b64decode(lines[2], validate=True)
    if len(root) != 32:
        raise ValueError("root is not 32 bytes")
    return size, root


def verify_inclusion(index, size, leaf, proof, root) -> bool:
    # RFC 9162 section 2.1.3.2
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof) -> bool:
    # RFC 9162 section 2.1.4.2
    if first > second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def main():
    req = json.load(sys.stdin)
    size, root = parse_note(req["note"])
    inclusion = []
    for p in req.get("inclusion", []):
        payload = bytes.fromhex(p["record_payload"])
        # The record's own bytes name its seq (u64 LE after the 32-byte prev_hash).
        seq_in_record = int.from_bytes(payload[32:40], "little")
        hashes = [bytes.fromhex(h) for h in p["hashes"]]
        ok = (
            p["tree_size"] == size
            and seq_in_record == p["seq"]
            and verify_inclusion(p["seq"] - 1, size, leaf_hash(payload), hashes, root)
        )
        inclusion.append(ok)
    consistency = []
    for p in req.get("consistency", []):
        hashes = [bytes.fromhex(h) for h in p["hashes"]]
        first_size, first_root = parse_note(p["first_note"])
        ok = verify_consistency(first_size, size, first_root, root, hashes)
        consistency.append(ok)
    print(json.dumps({"size": size, "root": root.hex(), "inclusion": inclusion, "consistency": consistency}))


if __name__ == "__main__":
    main()
