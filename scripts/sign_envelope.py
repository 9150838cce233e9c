#!/usr/bin/env python3
"""Reference gateway signer: signs a worldfleet envelope with nothing but the standard library.

Usage: sign_envelope.py KEY_HEX < unsigned.json > signed.json

The signature is HMAC-SHA256 over the RFC 8785 (JCS) form of the envelope without its
`signature` member. For envelopes like worldfleet's — objects, strings, integers, no floats —
JCS is JSON with keys sorted by UTF-16 code units, no insignificant whitespace and minimal
string escaping, which `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
produces for keys in the Basic Multilingual Plane. Gateways with floats or astral-plane keys
should use a full JCS library.
"""
import hashlib
import hmac
import json
import sys


def canonical(envelope: dict) -> bytes:
    unsigned = {key: value for key, value in envelope.items() if key != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(envelope: dict, key: bytes) -> dict:
    signed = dict(envelope)
    signed["signature"] = hmac.new(key, canonical(envelope), hashlib.sha256).hexdigest()
    return signed


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: sign_envelope.py KEY_HEX < unsigned.json > signed.json")
    key = bytes.fromhex(sys.argv[1])
    envelope = json.load(sys.stdin)
    json.dump(sign(envelope, key), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
