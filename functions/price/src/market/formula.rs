//! The price formula in fixed point, so every recompute is exact and reproducible:
//!
//! ```text
//! ratio  = clamp((demand + 1) / (supply + 1), 1/64, 64)
//! target = base × ratio ^ elasticity                       (computed as base × 2^(e·log2 ratio))
//! step   = clamp(target − price, −price·max_step, +price·max_step)   (at least 1 milli-credit)
//! next   = clamp(price + step, floor, ceiling)
//! ```
//!
//! `log2` and `exp2` are computed on Q32.32 integers (bit-by-bit logarithm, a table of
//! 2^(2^-i) built with integer square roots), so no floating point is involved.

/// Largest supply/demand ratio the formula distinguishes (and the inverse the smallest).
pub const MAX_RATIO: u64 = 64;
/// Fractional bits of the Q32.32 logarithm.
const FRAC_BITS: u32 = 32;
/// Bits of the Q62 mantissas.
const MANTISSA_BITS: u32 = 62;
const MANTISSA_ONE: u128 = 1 << MANTISSA_BITS;

/// `2^(2^-(i+1))` in Q62 for i in 0..32, by repeated integer square roots of 2.
const EXP2_TABLE: [u128; FRAC_BITS as usize] = {
    let mut table = [0_u128; FRAC_BITS as usize];
    let mut value = 2 * MANTISSA_ONE;
    let mut index = 0;
    while index < FRAC_BITS as usize {
        // sqrt(value / 2^62) × 2^62 = sqrt(value × 2^62)
        value = (value << MANTISSA_BITS).isqrt();
        table[index] = value;
        index += 1;
    }
    table
};

/// `log2(x)` in Q32.32 for `x >= 1`.
fn log2_q32(x: u64) -> i64 {
    let x = x.max(1);
    let integer = 63 - x.leading_zeros();
    let mut mantissa: u128 = if integer <= MANTISSA_BITS {
        u128::from(x) << (MANTISSA_BITS - integer)
    } else {
        u128::from(x) >> (integer - MANTISSA_BITS)
    };
    let mut result = i64::from(integer) << FRAC_BITS;
    for bit in (0..FRAC_BITS).rev() {
        mantissa = (mantissa * mantissa) >> MANTISSA_BITS;
        if mantissa >= 2 * MANTISSA_ONE {
            mantissa >>= 1;
            result |= 1 << bit;
        }
    }
    result
}

/// `value × 2^exponent` for a Q32.32 `exponent` in `-40..40`, rounded down.
fn scale_by_exp2(value: u64, exponent: i64) -> u128 {
    let integer = exponent >> FRAC_BITS; // floor, also for negative exponents
    let fraction = (exponent & ((1 << FRAC_BITS) - 1)) as u64;
    let mut mantissa = MANTISSA_ONE;
    for (index, factor) in EXP2_TABLE.iter().enumerate() {
        if fraction & (1 << (FRAC_BITS as usize - 1 - index)) != 0 {
            mantissa = (mantissa * factor) >> MANTISSA_BITS;
        }
    }
    // value < 2^41 and mantissa < 2^63, so the product fits in 104 bits.
    let product = u128::from(value) * mantissa;
    let shift = i64::from(MANTISSA_BITS) - integer;
    if shift >= 0 {
        product >> shift.min(127)
    } else {
        product << (-shift).min(20)
    }
}

/// The inputs of one good's recompute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormulaInput {
    /// Units in stock at the station (negative counts as 0).
    pub supply: i64,
    /// Demand pressure, units (negative counts as 0).
    pub demand: i64,
    /// Posted price, milli-credits.
    pub price_milli: i64,
    /// Price at balance, milli-credits.
    pub base_milli: i64,
    /// Elasticity, per-mille (500 = 0.5).
    pub elasticity_permille: i64,
    /// Largest move per recompute, per-mille of the posted price.
    pub max_step_permille: i64,
    pub floor_milli: i64,
    pub ceiling_milli: i64,
}

/// `base × ratio^elasticity`, where `ratio = (demand+1)/(supply+1)` clamped to `[1/64, 64]`.
/// Assumes validated rules: `base` below 2^40, elasticity at most 3000 per-mille.
pub fn target_price(input: &FormulaInput) -> i64 {
    let demand = input.demand.max(0) as u64 + 1;
    let supply = input.supply.max(0) as u64 + 1;
    let log_ratio =
        (log2_q32(demand) - log2_q32(supply)).clamp(-(log2_q32(MAX_RATIO)), log2_q32(MAX_RATIO));
    let exponent = (i128::from(log_ratio) * i128::from(input.elasticity_permille)).div_euclid(1000);
    let target = scale_by_exp2(input.base_milli.max(0) as u64, exponent as i64);
    target.min(i64::MAX as u128) as i64
}

/// The posted price after one recompute: a step toward the target of at most `max_step` of
/// the current price (at least 1 milli-credit), then clamped to `[floor, ceiling]`.
/// Returns `(next, target)`.
pub fn next_price(input: &FormulaInput) -> (i64, i64) {
    let target = target_price(input);
    let price = input
        .price_milli
        .clamp(input.floor_milli, input.ceiling_milli);
    let limit = (i128::from(price) * i128::from(input.max_step_permille) / 1000).max(1);
    let step = (i128::from(target) - i128::from(price)).clamp(-limit, limit);
    let next = (i128::from(price) + step).clamp(
        i128::from(input.floor_milli),
        i128::from(input.ceiling_milli),
    );
    (next as i64, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(supply: i64, demand: i64, price: i64) -> FormulaInput {
        FormulaInput {
            supply,
            demand,
            price_milli: price,
            base_milli: 10_000,
            elasticity_permille: 500,
            max_step_permille: 100,
            floor_milli: 1_000,
            ceiling_milli: 100_000,
        }
    }

    #[test]
    fn log2_is_exact_on_powers_of_two_and_close_elsewhere() {
        assert_eq!(log2_q32(1), 0);
        assert_eq!(log2_q32(1024), 10 << 32);
        let three = log2_q32(3) as f64 / (1_u64 << 32) as f64;
        assert!((three - 3_f64.log2()).abs() < 1e-8, "{three}");
        assert!(log2_q32(u64::MAX) > 63 << 32);
    }

    #[test]
    fn exp2_inverts_log2() {
        assert_eq!(scale_by_exp2(1000, 0), 1000);
        assert_eq!(scale_by_exp2(1000, 1 << 32), 2000);
        assert_eq!(scale_by_exp2(1000, -(1 << 32)), 500);
        let root_two = scale_by_exp2(1_000_000, 1 << 31);
        assert!((1_414_212..=1_414_214).contains(&root_two), "{root_two}");
    }

    #[test]
    fn balance_gives_the_base_price_and_scarcity_raises_it() {
        assert_eq!(target_price(&input(100, 100, 10_000)), 10_000);
        // demand/supply = 4, elasticity 0.5 → ×2
        let doubled = target_price(&input(99, 399, 10_000));
        assert!((19_999..=20_000).contains(&doubled), "{doubled}");
        let halved = target_price(&input(399, 99, 10_000));
        assert!((4_999..=5_000).contains(&halved), "{halved}");
        // The ratio is clamped to 64: 64^0.5 = 8.
        let clamped = target_price(&input(0, 1_000_000, 10_000));
        assert!((79_999..=80_000).contains(&clamped), "{clamped}");
    }

    #[test]
    fn steps_are_clamped_and_bounded() {
        assert_eq!(next_price(&input(99, 399, 10_000)).0, 11_000);
        assert_eq!(next_price(&input(399, 99, 10_000)).0, 9_000);
        assert_eq!(next_price(&input(100, 100, 10_000)).0, 10_000);
        // Never below the floor, never above the ceiling, even from a bad stored price.
        // A glut pulls the target toward base/8 = 1250, which is above the floor: it rises.
        assert_eq!(next_price(&input(1_000_000, 0, 1_000)).0, 1_100);
        let mut glut = input(1_000_000, 0, 1_000);
        glut.elasticity_permille = 1_000; // target 10000/64 = 156, below the floor
        assert_eq!(next_price(&glut), (1_000, 156));
        assert_eq!(next_price(&input(0, 1_000_000, 500_000)).0, 90_000);
        // A step of at least one milli-credit, so tiny prices still move.
        let mut tiny = input(0, 1_000, 1);
        tiny.floor_milli = 1;
        assert_eq!(next_price(&tiny).0, 2);
    }
}

#[cfg(test)]
mod worked_example {
    use super::*;

    /// The worked example in the crate README; keep the two in step.
    #[test]
    fn worked_example_from_the_readme() {
        let first = FormulaInput {
            supply: 400,
            demand: 800,
            price_milli: 10_000,
            base_milli: 10_000,
            elasticity_permille: 500,
            max_step_permille: 100,
            floor_milli: 1_000,
            ceiling_milli: 100_000,
        };
        let (next, target) = next_price(&first);
        let second = FormulaInput {
            demand: 740,
            price_milli: next,
            ..first
        };
        let (next2, target2) = next_price(&second);
        assert_eq!((target, next), (14_133, 11_000));
        assert_eq!((target2, next2), (13_593, 12_100));
    }
}
