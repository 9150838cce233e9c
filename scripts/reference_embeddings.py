#!/usr/bin/env python3
"""Independent reference embeddings for the inference server's correctness test.

A from-scratch NumPy implementation of the BERT encoder forward pass (all-MiniLM-L6-v2:
post-layer-norm BERT, erf GELU), followed by mean pooling and L2 normalisation. It reads the
same model.safetensors and tokenizer.json as the server, but shares no inference code with
it: each sentence is run alone (no padding, no batching), in float64.

Usage: reference_embeddings.py MODEL_DIR SENTENCES_TXT OUTPUT_JSON
"""

import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

erf = np.vectorize(math.erf)


def layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * weight + bias


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def softmax(x):
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class Bert:
    def __init__(self, model_dir):
        with open(f"{model_dir}/config.json") as f:
            self.config = json.load(f)
        raw = load_file(f"{model_dir}/model.safetensors")
        # Some checkpoints prefix every tensor with "bert."; this one may or may not.
        self.weights = {
            (name[len("bert."):] if name.startswith("bert.") else name): value.astype(np.float64)
            for name, value in raw.items()
        }
        self.eps = self.config["layer_norm_eps"]
        self.heads = self.config["num_attention_heads"]

    def w(self, name):
        return self.weights[name]

    def linear(self, x, prefix):
        return x @ self.w(f"{prefix}.weight").T + self.w(f"{prefix}.bias")

    def encode(self, token_ids):
        ids = np.asarray(token_ids)
        positions = np.arange(len(ids))
        hidden = (
            self.w("embeddings.word_embeddings.weight")[ids]
            + self.w("embeddings.position_embeddings.weight")[positions]
            + self.w("embeddings.token_type_embeddings.weight")[np.zeros_like(ids)]
        )
        hidden = layer_norm(
            hidden,
            self.w("embeddings.LayerNorm.weight"),
            self.w("embeddings.LayerNorm.bias"),
            self.eps,
        )
        seq_len, width = hidden.shape
        head_dim = width // self.heads
        for layer in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{layer}"

            def split_heads(t):
                return t.reshape(seq_len, self.heads, head_dim).transpose(1, 0, 2)

            q = split_heads(self.linear(hidden, f"{p}.attention.self.query"))
            k = split_heads(self.linear(hidden, f"{p}.attention.self.key"))
            v = split_heads(self.linear(hidden, f"{p}.attention.self.value"))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
            context = (softmax(scores) @ v).transpose(1, 0, 2).reshape(seq_len, width)
            attention = self.linear(context, f"{p}.attention.output.dense")
            hidden = layer_norm(
                attention + hidden,
                self.w(f"{p}.attention.output.LayerNorm.weight"),
                self.w(f"{p}.attention.output.LayerNorm.bias"),
                self.eps,
            )
            intermediate = gelu(self.linear(hidden, f"{p}.intermediate.dense"))
            output = self.linear(intermediate, f"{p}.output.dense")
            hidden = layer_norm(
                output + hidden,
                self.w(f"{p}.output.LayerNorm.weight"),
                self.w(f"{p}.output.LayerNorm.bias"),
                self.eps,
            )
        # No padding, so mean pooling over the attention mask is a plain mean.
        pooled = hidden.mean(axis=0)
        return pooled / np.linalg.norm(pooled)


def main():
    model_dir, sentences_path, output_path = sys.argv[1:4]
    with open(sentences_path, encoding="utf-8") as f:
        sentences = [line.rstrip("\n") for line in f if line.strip()]
    tokenizer = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    model = Bert(model_dir)
    embeddings = [model.encode(tokenizer.encode(s).ids).tolist() for s in sentences]
    with open(output_path, "w", encoding="utf-8") as f:
        json.dump({"model_dir": model_dir, "sentences": sentences, "embeddings": embeddings}, f)
    print(f"reference_embeddings: wrote {len(sentences)} embeddings to {output_path}")


if __name__ == "__main__":
    main()
