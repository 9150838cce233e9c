#!/usr/bin/env python3
"""NATS JetStream's fan-out, measured the way `worldfleet bench` measures the embedded pipeline.

Each event is published to FAN_OUT subjects of one file-storage stream with asynchronous
acknowledgements (publish_async, at most --pending unacknowledged); an event counts once all
of its acknowledgements arrived. Prints one JSON line: events, fan-out, seconds, events/s,
messages/s. Needs `nats-py` (pip install nats-py) and a nats-server with JetStream enabled.

Usage: bench_jetstream.py --url nats://127.0.0.1:PORT [--events N] [--fan-out 8]
"""

import argparse
import asyncio
import json
import os
import time

import nats
from nats.js.api import StorageType, StreamConfig


async def measure(url: str, events: int, fan_out: int, payload_bytes: int, pending: int) -> dict:
    client = await nats.connect(url)
    jetstream = client.jetstream(publish_async_max_pending=pending)
    stream = "FANOUT"
    try:
        await jetstream.delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    await jetstream.add_stream(
        StreamConfig(name=stream, subjects=["fanout.>"], storage=StorageType.FILE)
    )
    payload = os.urandom(payload_bytes // 2).hex().encode()
    started = time.perf_counter()
    cpu_started = time.process_time()
    for event in range(events):
        for target in range(fan_out):
            await jetstream.publish_async(f"fanout.{target}", payload)
    await jetstream.publish_async_completed()
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - cpu_started
    info = await jetstream.stream_info(stream)
    stored = info.state.messages
    await jetstream.delete_stream(stream)
    await client.close()
    if stored != events * fan_out:
        raise SystemExit(f"the stream holds {stored} messages, expected {events * fan_out}")
    return {
        "events": events,
        "fan_out": fan_out,
        "payload_bytes": len(payload),
        "seconds": round(elapsed, 3),
        "events_per_s": round(events / elapsed, 1),
        "messages_per_s": round(events * fan_out / elapsed, 1),
        # Near `seconds`, the Python client itself is the bottleneck, not the server.
        "client_cpu_s": round(client_cpu, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--fan-out", type=int, default=8)
    parser.add_argument("--payload-bytes", type=int, default=512)
    parser.add_argument("--pending", type=int, default=4_000)
    args = parser.parse_args()
    figures = asyncio.run(
        measure(args.url, args.events, args.fan_out, args.payload_bytes, args.pending)
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
