//! Hand-written CPU kernels for the places where candle's generic ops waste time on this
//! model: attention over packed variable-length sequences (no padding, no mask, no tiny
//! batched matmuls), the bias + erf-GELU of the feed-forward block, and bias + residual +
//! layer norm — each one parallel pass instead of several sequential ones. The loops are
//! written to auto-vectorise (lane-wise accumulators, a polynomial `exp`), and run under
//! `pulp`'s run-time dispatch so they use AVX-512/AVX2+FMA when the CPU has them while the
//! binary stays portable.

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
    #[inline(always)]
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
                    *score = dot(query, key) * scale;
                    max_score = max_score.max(*score);
                }
                let mut total = 0.0f32;
                for score in scores.iter_mut() {
                    *score = exp(*score - max_score);
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
        let arch = pulp::Arch::new();
        out.par_chunks_mut(width * GELU_ROWS_PER_TASK)
            .zip(input.par_chunks(width * GELU_ROWS_PER_TASK))
            .for_each(|(out_rows, in_rows)| {
                arch.dispatch(|| {
                    for (out_row, in_row) in out_rows.chunks_mut(width).zip(in_rows.chunks(width)) {
                        for ((o, x), b) in out_row.iter_mut().zip(in_row).zip(bias) {
                            *o = gelu_erf(x + b);
                        }
                    }
                })
            });
        Ok((CpuStorage::F32(out), input_layout.shape().clone()))
    }
}

/// Exact GELU, `x * Φ(x)`, with erf evaluated by the Abramowitz–Stegun 7.1.26 rational
/// approximation (absolute error below 1.5e-7, i.e. at f32 precision).
#[inline(always)]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `e^x` without a libm call, so loops over it vectorise: `x = n·ln2 + r` with
/// `|r| ≤ ln2/2`, a degree-6 Taylor polynomial for `e^r` (relative error ≈ 1.2e-7), and
/// `2^n` built directly in the exponent bits. Inputs are clamped to [-87, 88], where f32
/// neither overflows nor goes subnormal.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n * LN2_HIGH` is exact (Cody–Waite reduction).
    const LN2_HIGH: f32 = 0.693_145_75;
    const LN2_LOW: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by adding and subtracting 1.5·2^23: plain adds, unlike `round()`,
    // which is a libm call unless SSE4.1 is on.
    const ROUNDING_SHIFT: f32 = 12_582_912.0;
    let n = (x * LOG2_E + ROUNDING_SHIFT) - ROUNDING_SHIFT;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let polynomial = 1.0
        + r * (1.0
            + r * (1.0 / 2.0 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
    let two_to_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    polynomial * two_to_n
}

/// Dot product with eight independent partial sums, which the compiler turns into one vector
/// accumulator (a plain `.sum()` must stay sequential to keep f32 rounding order).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut a_chunks = a.chunks_exact(8);
    let mut b_chunks = b.chunks_exact(8);
    for (a8, b8) in a_chunks.by_ref().zip(b_chunks.by_ref()) {
        for lane in 0..8 {
            lanes[lane] += a8[lane] * b8[lane];
        }
    }
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    lanes.iter().sum::<f32>() + tail
}

/// Sum with eight independent partial sums (see [`dot`]).
#[inline(always)]
fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in chunks.by_ref() {
        for lane in 0..8 {
            lanes[lane] += chunk[lane];
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `layer_norm(x + bias + residual)` over rows of `[rows, width]`, the tail of both BERT
/// sub-blocks, in one pass.
pub(crate) struct BiasResidualLayerNorm<'a> {
    pub bias: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
}

/// Rows per parallel task for the row-wise kernels.
const NORM_ROWS_PER_TASK: usize = 32;

impl BiasResidualLayerNorm<'_> {
    #[inline(always)]
    fn normalise_rows(&self, out_rows: &mut [f32], x_rows: &[f32], residual_rows: &[f32]) {
        let width = self.bias.len();
        for ((out, x), residual) in out_rows
            .chunks_mut(width)
            .zip(x_rows.chunks(width))
            .zip(residual_rows.chunks(width))
        {
            for (((o, x), r), b) in out.iter_mut().zip(x).zip(residual).zip(self.bias) {
                *o = x + r + b;
            }
            let mean = sum(out) / width as f32;
            for o in out.iter_mut() {
                *o -= mean;
            }
            let variance = dot(out, out) / width as f32;
            let inverse_std = 1.0 / (variance + self.eps).sqrt();
            for ((o, g), b) in out.iter_mut().zip(self.gamma).zip(self.beta) {
                *o = *o * inverse_std * g + b;
            }
        }
    }
}

impl CustomOp2 for BiasResidualLayerNorm<'_> {
    fn name(&self) -> &'static str {
        "bias-residual-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(x, x_layout, self.name())?;
        let residual = contiguous_f32(residual, residual_layout, self.name())?;
        let width = self.bias.len();
        if width == 0
            || x.len() != residual.len()
            || x.len() % width != 0
            || self.gamma.len() != width
            || self.beta.len() != width
        {
            candle_core::bail!("bias-residual-layer-norm: mismatched shapes");
        }
        let mut out = vec![0.0f32; x.len()];
        let arch = pulp::Arch::new();
        let task = width * NORM_ROWS_PER_TASK;
        out.par_chunks_mut(task)
            .zip(x.par_chunks(task))
            .zip(residual.par_chunks(task))
            .for_each(|((out_rows, x_rows), residual_rows)| {
                arch.dispatch(|| self.normalise_rows(out_rows, x_rows, residual_rows))
            });
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

#[inline(always)]
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
    let value = 1.0 - polynomial * exp(-magnitude * magnitude);
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
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
        ] {
            assert!((erf(x) - expected).abs() < 5e-7, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + expected).abs() < 5e-7);
        }
    }

    #[test]
    fn fast_exp_is_accurate_to_f32_precision() {
        let mut x = -80.0f32;
        while x < 80.0 {
            let relative = (exp(x) - x.exp()).abs() / x.exp();
            assert!(relative < 5e-7, "exp({x}): {} vs {}", exp(x), x.exp());
            x += 0.173;
        }
        // Far below the clamp: a tiny positive number, not NaN, zero or garbage bits.
        let tiny = exp(-1000.0);
        assert!(tiny > 0.0 && tiny < 1e-37, "{tiny}");
    }

    #[test]
    fn bias_residual_layer_norm_matches_the_formula() {
        let device = candle_core::Device::Cpu;
        let x =
            candle_core::Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], (1, 4), &device).expect("x");
        let residual = candle_core::Tensor::from_vec(vec![0.5f32; 4], (1, 4), &device).expect("r");
        let op = BiasResidualLayerNorm {
            bias: &[-0.5; 4],
            gamma: &[2.0; 4],
            beta: &[1.0; 4],
            eps: 0.0,
        };
        let out = x
            .apply_op2_no_bwd(&residual, &op)
            .expect("norm")
            .to_vec2::<f32>()
            .expect("values");
        // Row 1,2,3,4: mean 2.5, variance 1.25.
        let expected: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .map(|v| (v - 2.5) / 1.25f32.sqrt() * 2.0 + 1.0)
            .collect();
        for (a, b) in out[0].iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
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
