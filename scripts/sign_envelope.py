#!/usr/bin/env python3
"""Reference gateway signer: signs a worldfleet envelope, or an HTTP request to
`worldfleet serve`, with nothing but the standard library.

Usage:
  sign_envelope.py KEY_HEX [--now] < unsigned.json > signed.json
  sign_envelope.py --request GATEWAY KEY_HEX METHOD PATH_AND_QUERY [BODY_FILE] [--timestamp MS]

The second form prints the three request headers (`x-worldfleet-gateway`,
`x-worldfleet-timestamp`, `x-worldfleet-signature`), one `Name: value` per line, for
`curl -H @headers.txt`. `--now` re-stamps the envelope's `sent_at_ms` with the current time before
signing (intake refuses envelopes outside ±300 s of its clock, so the shipped samples need it). The request signature is HMAC-SHA256, under the gateway's key, of
`METHOD\nPATH_AND_QUERY\nTIMESTAMP_MS\nhex(sha256(BODY))`, PATH_AND_QUERY exactly as it goes on
the request line (percent-encoding included); the server accepts it for ±300 s. BODY_FILE is
read as bytes and must be the exact bytes sent (`curl --data-binary @BODY_FILE`); no file means
an empty body.

Envelope signatures:

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
import time


def canonical(envelope: dict) -> bytes:
    unsigned = {key: value for key, value in envelope.items() if key != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(envelope: dict, key: bytes) -> dict:
    signed = dict(envelope)
    signed["signature"] = hmac.new(key, canonical(envelope), hashlib.sha256).hexdigest()
    return signed


def sign_request(key: bytes, method: str, path_and_query: str, timestamp_ms: int, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method}\n{path_and_query}\n{timestamp_ms}\n{digest}".encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def request_main(arguments: list) -> None:
    usage = "usage: sign_envelope.py --request GATEWAY KEY_HEX METHOD PATH_AND_QUERY [BODY_FILE] [--timestamp MS]"
    timestamp_ms = None
    if "--timestamp" in arguments:
        at = arguments.index("--timestamp")
        if at + 1 >= len(arguments):
            sys.exit(usage)
        timestamp_ms = int(arguments[at + 1])
        del arguments[at:at + 2]
    if len(arguments) not in (4, 5):
        sys.exit(usage)
    gateway, key_hex, method, path_and_query = arguments[:4]
    body = b""
    if len(arguments) == 5:
        with open(arguments[4], "rb") as file:
            body = file.read()
    if timestamp_ms is None:
        timestamp_ms = int(time.time() * 1000)
    signature = sign_request(bytes.fromhex(key_hex), method.upper(), path_and_query, timestamp_ms, body)
    sys.stdout.write(f"x-worldfleet-gateway: {gateway}\n")
    sys.stdout.write(f"x-worldfleet-timestamp: {timestamp_ms}\n")
    sys.stdout.write(f"x-worldfleet-signature: {signature}\n")


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--request":
        request_main(sys.argv[2:])
        return
    arguments = sys.argv[1:]
    now = "--now" in arguments
    arguments = [argument for argument in arguments if argument != "--now"]
    if len(arguments) != 1:
        sys.exit("usage: sign_envelope.py KEY_HEX [--now] < unsigned.json > signed.json (or --request, see --help)")
    if arguments[0] in ("-h", "--help"):
        sys.stdout.write(__doc__)
        return
    key = bytes.fromhex(arguments[0])
    envelope = json.load(sys.stdin)
    if now:
        envelope["sent_at_ms"] = int(time.time() * 1000)
    json.dump(sign(envelope, key), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
