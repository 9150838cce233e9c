#!/usr/bin/env python3
"""Writes the bad-input corpus: one envelope file per case and `cases.toml`, the manifest naming
the code intake must record for each. Run from anywhere; it rewrites this folder's files.

Every case starts from the dialogue sample (gateway `gw-sample`, the sample key, `sent_at_ms`
1763700000000) under an event id and actor of its own, changed in one way. Cases whose point is
that the signature would otherwise be good are signed with the sample key by the reference signer
(`scripts/sign_envelope.py`) *before* the change that makes them bad, so only that change stands
between them and acceptance.
"""
import copy
import hashlib
import hmac
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from sign_envelope import canonical  # noqa: E402

KEY = bytes.fromhex("73616d706c652d676174657761792d6b65792d33322d62797465732d6c6f6e67")
SENT_AT = 1763700000000

with open(os.path.join(ROOT, "events", "samples", "dialogue.json"), encoding="utf-8") as sample:
    BASE = json.load(sample)
del BASE["signature"]
BASE["sent_at_ms"] = SENT_AT


def event_id(number: int) -> str:
    return f"01JD3QBAD{number:017d}"


def sign(envelope: dict, key: bytes = KEY) -> dict:
    signed = dict(envelope)
    signed["signature"] = hmac.new(key, canonical(envelope), hashlib.sha256).hexdigest()
    return signed


def text(envelope: dict) -> str:
    return json.dumps(envelope, indent=2, ensure_ascii=False) + "\n"


CASES = []
counter = iter(range(1, 1000))


def case(name, expect, why, build=None, **extra):
    """`build(envelope)` returns the file's text (str or bytes) from a fresh base envelope."""
    number = next(counter)
    envelope = copy.deepcopy(BASE)
    envelope["event_id"] = event_id(number)
    envelope["actor"] = f"p-bad-{number:03d}"
    body = build(envelope) if build else text(sign(envelope))
    CASES.append(dict(name=name, expect=expect, why=why, body=body, **extra))


def changed(change, signed=True):
    def build(envelope):
        change(envelope)
        return text(sign(envelope) if signed else dict(envelope, signature="0" * 64))
    return build


def signed_then(edit):
    """Signs the envelope, then edits the signed file's text."""
    def build(envelope):
        return edit(text(sign(envelope)))
    return build


def as_trade(envelope):
    envelope.update(kind="trade", partition="region-1/station-2",
                    payload={"good": "ore", "side": "buy", "quantity": 5})
    return envelope


def setter(field, value):
    def change(envelope):
        envelope[field] = value
    return change


def payload_setter(field, value):
    def change(envelope):
        envelope["payload"][field] = value
    return change


# Accepted controls: the limits are inclusive, and the corpus's plumbing works.
case("control-accepted", "accepted", "the dialogue sample under its own event id")
case("participants-at-limit", "accepted", "64 participants: the limit itself",
     changed(setter("participants", [f"p-{n:06d}" for n in range(100, 164)])))
case("body-at-64KiB", "accepted",
     "a good envelope padded with whitespace to exactly 65,536 bytes (the signature covers the "
     "JCS form, so whitespace does not break it)", pad_to=65536)
case("rate-first", "accepted", "first of three from one actor; intake's burst is 2 in this test",
     changed(setter("actor", "p-flood")))
case("rate-second", "accepted", "second of three from one actor",
     changed(setter("actor", "p-flood")))

# oversized
case("body-64KiB-plus-1", "oversized", "padded with whitespace to 65,537 bytes", pad_to=65537)

# malformed
case("not-json", "malformed", "plain text", lambda envelope: "hello, intake\n")
case("array-not-object", "malformed", "a JSON array holding a good envelope",
     lambda envelope: "[" + text(sign(envelope)).strip() + "]\n")
case("missing-actor", "malformed", "a required field left out",
     changed(lambda envelope: envelope.pop("actor")))
case("unknown-top-level-field", "malformed", "a field the schema does not have",
     changed(setter("colour", "red")))
case("duplicate-actor-signed-for-first", "malformed",
     "`actor` twice; the signature is good for the first (a first-wins reader accepts it)",
     signed_then(lambda body: re.sub(r'(\n  "actor": "[^"]*",)', r'\1\n  "actor": "p-intruder",', body, count=1)))
case("duplicate-actor-signed-for-last", "malformed",
     "`actor` twice; the signature is good for the last (a last-wins reader, like serde_json "
     "or Python's json, accepts it)",
     signed_then(lambda body: body.replace('  "actor": ', '  "actor": "p-intruder",\n  "actor": ', 1)))
case("duplicate-payload-member", "malformed",
     "`text` twice inside the payload, signed for the last",
     signed_then(lambda body: body.replace('    "text": ', '    "text": "Give me your gold.",\n    "text": ', 1)))
case("duplicate-name-via-escape", "malformed",
     "`actor` and `\\u0061ctor`: the same name once escapes are decoded, signed for the last",
     signed_then(lambda body: body.replace('  "actor": ', '  "actor": "p-intruder",\n  "\\u0061ctor": ', 1)))
case("nested-10000-levels", "malformed",
     "a member holding 10,000 nested arrays (intake's reader stops at 128 levels)",
     nest=10000)
case("number-out-of-range", "malformed", "`sent_at_ms` is 1e400, beyond any float",
     signed_then(lambda body: body.replace(f'"sent_at_ms": {SENT_AT}', '"sent_at_ms": 1e400', 1)))
case("sent-at-past-u64", "malformed", "`sent_at_ms` is 2^64, one past the largest integer intake reads",
     signed_then(lambda body: body.replace(f'"sent_at_ms": {SENT_AT}', '"sent_at_ms": 18446744073709551616', 1)))
case("raw-nul-byte", "malformed",
     "a raw NUL byte between members (SQS itself refuses a message body holding U+0000, so on "
     "the emulators the send fails instead)",
     signed_then(lambda body: body.replace("{\n", "{\x00\n", 1)), sqs="refused")
case("invalid-utf8", "malformed",
     "a 0xFF byte inside the dialogue text (a queue message is text, so this body cannot be "
     "queued at all; intake's parser refuses it)",
     signed_then(lambda body: body.encode("utf-8").replace(b"Hail", b"H\xffil", 1)), queue="unsendable")

# unsupported_version
case("version-2", "unsupported_version", "`v` is 2", changed(setter("v", 2)))
case("version-huge", "unsupported_version", "`v` is 10^20, past any integer",
     signed_then(lambda body: body.replace('"v": 1,', '"v": 100000000000000000000,', 1)))

# invalid_field
case("participants-over-limit", "invalid_field", "65 participants: one over the limit",
     changed(setter("participants", [f"p-{n:06d}" for n in range(100, 165)])))
case("nul-in-actor", "invalid_field", "an escaped NUL (\\u0000) at the end of the actor",
     changed(lambda envelope: envelope.update(actor=envelope["actor"] + "\u0000")))
case("nul-in-dialogue-text", "invalid_field", "an escaped NUL (\\u0000) inside the dialogue text",
     changed(payload_setter("text", "Hail,\u0000 traveller.")))
case("lookalike-actor", "invalid_field", "the actor's `a` is CYRILLIC SMALL LETTER A (U+0430)",
     changed(lambda envelope: envelope.update(actor=envelope["actor"].replace("bad", "b\u0430d"))))
case("lookalike-event-id", "invalid_field", "the event id's `0`s include a CYRILLIC CAPITAL LETTER O (U+041E)",
     changed(lambda envelope: envelope.update(event_id=envelope["event_id"].replace("0", "\u041e", 1))))
case("trade-quantity-huge", "invalid_field", "a trade of 10^30 units (past any integer)",
     lambda envelope: text(sign(as_trade(envelope))).replace('"quantity": 5', '"quantity": 1000000000000000000000000000000', 1))
case("combat-damage-past-u32", "invalid_field", "combat damage 2^32, one past the largest",
     changed(lambda envelope: envelope.update(kind="combat", payload={"target": "wolf", "outcome": "hit", "damage": 4294967296})))

# bad_uid
case("lookalike-partition-cyrillic", "bad_uid", "the partition's `e` in `scene` is CYRILLIC SMALL LETTER IE (U+0435)",
     changed(lambda envelope: envelope.update(partition=envelope["partition"].replace("scene", "sc\u0435ne"))))
case("lookalike-partition-fullwidth-solidus", "bad_uid", "a FULLWIDTH SOLIDUS (U+FF0F) instead of the last `/`",
     changed(lambda envelope: envelope.update(partition=envelope["partition"].replace("/scene", "\uff0fscene"))))
case("lookalike-partition-hyphen", "bad_uid", "a HYPHEN (U+2010) instead of `-` in `gm-0001`",
     changed(lambda envelope: envelope.update(partition=envelope["partition"].replace("gm-", "gm\u2010"))))
case("nul-in-partition", "bad_uid", "an escaped NUL (\\u0000) inside a partition segment",
     changed(lambda envelope: envelope.update(partition=envelope["partition"].replace("scene", "sce\u0000ne"))))

# unknown_gateway
case("unknown-gateway", "unknown_gateway", "gateway `gw-nobody`, for which intake has no key",
     changed(setter("gateway", "gw-nobody")))

# bad_signature
case("signature-uppercase-hex", "bad_signature",
     "the right HMAC, spelled in upper-case hex (one signature, one spelling: lowercase)",
     signed_then(lambda body: body.replace(json.loads(body)["signature"], json.loads(body)["signature"].upper())))
case("signed-with-another-key", "bad_signature", "a good envelope signed with a key that is not gw-sample's",
     lambda envelope: text(sign(envelope, b"another key entirely")))
case("altered-after-signing", "bad_signature", "the dialogue text changed after signing",
     signed_then(lambda body: body.replace("Hail", "Hale", 1)))

# clock_skew
case("sent-301s-early", "clock_skew", "`sent_at_ms` 301 s before intake's clock (the sample time + 1 s)",
     changed(setter("sent_at_ms", SENT_AT - 300_000)))
case("sent-at-2-pow-53", "clock_skew",
     "`sent_at_ms` is 2^53, the largest integer every JSON reader and JCS agree on: "
     "valid, and 285,000 years ahead",
     changed(setter("sent_at_ms", 2**53)))

# replayed, event_id_conflict
case("replay-of-control", "replayed", "byte for byte the `control-accepted` file again",
     lambda envelope: CASES[0]["body"])
case("event-id-conflict", "event_id_conflict",
     "`control-accepted`'s event id with another actor, correctly signed",
     changed(lambda envelope: envelope.update(event_id=event_id(1))))

# rate_limited
case("rate-third", "rate_limited", "third from one actor, over the burst of 2",
     changed(setter("actor", "p-flood")))


def main():
    for stale in os.listdir(HERE):
        if stale.endswith(".json"):
            os.remove(os.path.join(HERE, stale))
    lines = [
        "# The bad-input corpus (events/bad/README.md). Written by make_corpus.py: edit that, not this.",
        "# Each case: `file` is sent to intake as it is; `expect` is the code intake must record",
        "# (or `accepted` for the controls). `pad_to` pads the file with whitespace to that many",
        "# bytes, `nest` adds a member holding that many nested arrays, both at test time.",
        "# `sqs = \"refused\"`: SQS refuses the body itself; `queue = \"unsendable\"`: no queue can carry it.",
        "",
        "# Intake's per-actor burst for the corpus run (the `rate-*` cases count on it).",
        "rate_limit_burst = 2",
    ]
    for index, entry in enumerate(CASES, start=1):
        file_name = f"{index:02d}-{entry['name']}.json"
        body = entry["body"]
        with open(os.path.join(HERE, file_name), "wb") as out:
            out.write(body if isinstance(body, bytes) else body.encode("utf-8"))
        lines += ["", "[[case]]", f'name = "{entry["name"]}"', f'file = "{file_name}"',
                  f'expect = "{entry["expect"]}"', f"why = {json.dumps(entry['why'], ensure_ascii=False)}"]
        for extra in ("pad_to", "nest"):
            if extra in entry:
                lines.append(f"{extra} = {entry[extra]}")
        for extra in ("sqs", "queue"):
            if extra in entry:
                lines.append(f'{extra} = "{entry[extra]}"')
    with open(os.path.join(HERE, "cases.toml"), "w", encoding="utf-8") as manifest:
        manifest.write("\n".join(lines) + "\n")
    print(f"{len(CASES)} cases written to {HERE}")


if __name__ == "__main__":
    main()
