#!/usr/bin/env python3
"""Reference benchmark: sentence-transformers (PyTorch, CPU) on the same sentences, batch
sizes and thread count as `worldfleet-inference bench`, printing the same table.

Each batch of N sentences is one timed `encode(batch, batch_size=N)` call, which is what one
request of N texts is for the pool (sentence-transformers sorts by length inside a call, as
the pool packs without padding).

Usage: bench_reference.py MODEL_DIR SENTENCES_TXT [--threads 2] [--batch-sizes 1,8,32]
"""

import argparse
import os
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("sentences")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--warmup-requests", type=int, default=8)
    args = parser.parse_args()

    # Thread settings must be in place before torch starts its pools.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["MKL_NUM_THREADS"] = str(args.threads)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np
    import sentence_transformers
    import torch

    torch.set_num_threads(args.threads)
    model = sentence_transformers.SentenceTransformer(args.model_dir, device="cpu")
    with open(args.sentences, encoding="utf-8") as f:
        sentences = [line.rstrip("\n") for line in f if line.strip()]

    rows = []
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        batches = [sentences[i : i + batch_size] for i in range(0, len(sentences), batch_size)]
        for batch in batches[: args.warmup_requests]:
            model.encode(batch, batch_size=batch_size)
        latencies = []
        cpu_started = time.process_time()
        started = time.perf_counter()
        for batch in batches:
            sent = time.perf_counter()
            model.encode(batch, batch_size=batch_size, convert_to_numpy=True)
            latencies.append(time.perf_counter() - sent)
        elapsed = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu_started) * 1e3 / len(sentences)
        latencies = np.sort(np.array(latencies))
        pick = lambda p: latencies[int(round((len(latencies) - 1) * p))] * 1e3
        rows.append((batch_size, len(sentences) / elapsed, pick(0.5), pick(0.99), cpu_ms))

    print(
        f"sentence-transformers {sentence_transformers.__version__} on torch {torch.__version__}, "
        f"{len(sentences)} sentences, {torch.get_num_threads()} threads"
    )
    print("| load | embeddings/s | p50 latency | p99 latency | CPU ms per embedding |")
    print("|---|---|---|---|---|")
    for batch_size, rate, p50, p99, cpu_ms in rows:
        print(f"| batch {batch_size} | {rate:.0f} | {p50:.1f} ms | {p99:.1f} ms | {cpu_ms:.2f} |")


if __name__ == "__main__":
    main()
