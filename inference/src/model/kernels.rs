//! Hand-written CPU kernels for the two places where candle's generic ops waste time on this
//! model: attention over packed variable-length sequences (no padding, no mask, no tiny
//! batched matmuls) and the bias + erf-GELU of the feed-forward block (one parallel pass
//! instead of two sequential ones).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape};
use rayon::prelude::*;

fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("{op}: expected f32 storage");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&values[start..end]),
        None => candle_core::bail!("{op}: expected a contiguous tensor"),
    }
}

/// Multi-head self-attention over sequences packed one after another along the rows of a
/// fused `[tokens, 3 * hidden]` query/key/value matrix. Every sequence attends only to its own
/// tokens, so no padding or mask is needed. Output: `[tokens, hidden]`.
pub(crate) struct PackedSelfAttention<'a> {
    /// Length of each packed sequence, in order; they sum to the number of rows.
    pub sequence_lengths: &'a [usize],
    pub heads: usize,
    pub head_dim: usize,
}

impl PackedSelfAttention<'_> {
    /// Attention for one sequence: `qkv` holds its rows, `out` receives its `[len, hidden]`.
    fn attend_one_sequence(&self, qkv: &[f32], len: usize, out: &mut [f32]) {
        let hidden = self.heads * self.head_dim;
        let row = 3 * hidden;
        let scale = 1.0 / (self.head_dim as f32).sqrt();
        let mut scores = vec![0.0f32; len];
        for head in 0..self.heads {
            let q_offset = head * self.head_dim;
            let k_offset = hidden + q_offset;
            let v_offset = 2 * hidden + q_offset;
            for i in 0..len {
                let query = &qkv[i * row + q_offset..i * row + q_offset + self.head_dim];
                let mut max_score = f32::NEG_INFINITY;
                for (j, score) in scores.iter_mut().enumerate() {
                    let key = &qkv[j * row + k_offset..j * row + k_offset + self.head_dim];
                    let dot: f32 = query.iter().zip(key).map(|(a, b)| a * b).sum();
                    *score = dot * scale;
                    max_score = max_score.max(*score);
                }
                let mut total = 0.0f32;
                for score in scores.iter_mut() {
                    *score = (*score - max_score).exp();
                    total += *score;
                }
                let context =
                    &mut out[i * hidden + q_offset..i * hidden + q_offset + self.head_dim];
                context.fill(0.0);
                for (j, score) in scores.iter().enumerate() {
                    let weight = score / total;
                    let value = &qkv[j * row + v_offset..j * row + v_offset + self.head_dim];
                    for (c, v) in context.iter_mut().zip(value) {
                        *c += weight * v;
                    }
                }
            }
        }
    }
}

impl CustomOp1 for PackedSelfAttention<'_> {
    fn name(&self) -> &'static str {
        "packed-self-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = contiguous_f32(storage, layout, self.name())?;
        let hidden = self.heads * self.head_dim;
        let tokens: usize = self.sequence_lengths.iter().sum();
        if layout.dims() != [tokens, 3 * hidden] {
            candle_core::bail!(
                "packed-self-attention: qkv shape {:?}, expected [{tokens}, {}]",
                layout.dims(),
                3 * hidden
            );
        }
        let mut out = vec![0.0f32; tokens * hidden];
        // Split input and output into per-sequence chunks, then attend in parallel.
        let mut work = Vec::with_capacity(self.sequence_lengths.len());
        let mut qkv_rest = qkv;
        let mut out_rest = out.as_mut_slice();
        for &len in self.sequence_lengths {
            let (qkv_chunk, qkv_tail) = qkv_rest.split_at(len * 3 * hidden);
            let (out_chunk, out_tail) = out_rest.split_at_mut(len * hidden);
            work.push((qkv_chunk, len, out_chunk));
            qkv_rest = qkv_tail;
            out_rest = out_tail;
        }
        work.into_par_iter()
            .for_each(|(qkv_chunk, len, out_chunk)| {
                self.attend_one_sequence(qkv_chunk, len, out_chunk)
            });
        Ok((CpuStorage::F32(out), Shape::from((tokens, hidden))))
    }
}

/// `gelu(x + bias)` with the exact (erf) GELU that BERT uses, over `[rows, width]` + `[width]`.
pub(crate) struct BiasGelu;

/// Rows per parallel task: large enough to amortise scheduling, small enough to balance.
const GELU_ROWS_PER_TASK: usize = 16;

impl CustomOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "bias-gelu"
    }

    fn cpu_fwd(
        &self,
        input: &CpuStorage,
        input_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(input, input_layout, self.name())?;
        let bias = contiguous_f32(bias, bias_layout, self.name())?;
        let width = bias.len();
        if width == 0 || input.len() % width != 0 {
            candle_core::bail!("bias-gelu: bias width {width} does not divide input");
        }
        let mut out = vec![0.0f32; input.len()];
        out.par_chunks_mut(width * GELU_ROWS_PER_TASK)
            .zip(input.par_chunks(width * GELU_ROWS_PER_TASK))
            .for_each(|(out_rows, in_rows)| {
                for (out_row, in_row) in out_rows.chunks_mut(width).zip(in_rows.chunks(width)) {
                    for ((o, x), b) in out_row.iter_mut().zip(in_row).zip(bias) {
                        *o = gelu_erf(x + b);
                    }
                }
            });
        Ok((CpuStorage::F32(out), input_layout.shape().clone()))
    }
}

/// Exact GELU, `x * Φ(x)`, with erf evaluated by the Abramowitz–Stegun 7.1.26 rational
/// approximation (absolute error below 1.5e-7, i.e. at f32 precision).
#[inline]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let magnitude = x.abs();
    let t = 1.0 / (1.0 + P * magnitude);
    let polynomial = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    let value = 1.0 - polynomial * (-magnitude * magnitude).exp();
    value.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // erf at a few points, to 7 digits (the approximation is good to 1.5e-7; f32 adds rounding).
        for (x, expected) in [
            (0.0, 0.0),
            (0.5, 0.520_499_88),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
        ] {
            assert!((erf(x) - expected).abs() < 5e-7, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + expected).abs() < 5e-7);
        }
    }

    #[test]
    fn packed_attention_keeps_sequences_apart() {
        // Two sequences of length 1: each token can only attend to itself, so the output is
        // exactly its own value vector whatever the queries and keys are.
        let hidden = 2;
        let qkv: Vec<f32> = vec![
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, // token 0: q, k, v
            7.0, 8.0, 9.0, 10.0, 11.0, 12.0, // token 1: q, k, v
        ];
        let tensor = candle_core::Tensor::from_vec(qkv, (2, 3 * hidden), &candle_core::Device::Cpu)
            .expect("tensor");
        let lengths = [1, 1];
        let op = PackedSelfAttention {
            sequence_lengths: &lengths,
            heads: 2,
            head_dim: 1,
        };
        let out = tensor.apply_op1_no_bwd(&op).expect("attention");
        assert_eq!(
            out.to_vec2::<f32>().expect("values"),
            vec![vec![5.0, 6.0], vec![11.0, 12.0]]
        );
    }
}
