//! Arithmetic of the projection language: checked `int` (i64) arithmetic, finite-only
//! `float` (f64) arithmetic, and the conversions between the two.
//!
//! Invariant: an `int` result is the exact mathematical result or a trap (never a
//! wrapped value), and a `float` result is always finite (NaN and infinities become
//! [`Trap::NonFinite`]), so both engines agree bit for bit.

use crate::string::format_float;
use crate::{Result, Trap};

/// Adds two ints exactly.
///
/// # Errors
///
/// [`Trap::Overflow`]`("addition")` when the sum does not fit in an int.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::add_int, Trap};
/// assert_eq!(add_int(2, 3), Ok(5));
/// assert_eq!(add_int(i64::MAX, 1), Err(Trap::Overflow("addition")));
/// ```
pub fn add_int(a: i64, b: i64) -> Result<i64> {
    a.checked_add(b).ok_or(Trap::Overflow("addition"))
}

/// Subtracts `b` from `a` exactly.
///
/// # Errors
///
/// [`Trap::Overflow`]`("subtraction")` when the difference does not fit in an int.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::sub_int, Trap};
/// assert_eq!(sub_int(2, 3), Ok(-1));
/// assert_eq!(sub_int(i64::MIN, 1), Err(Trap::Overflow("subtraction")));
/// ```
pub fn sub_int(a: i64, b: i64) -> Result<i64> {
    a.checked_sub(b).ok_or(Trap::Overflow("subtraction"))
}

/// Multiplies two ints exactly.
///
/// # Errors
///
/// [`Trap::Overflow`]`("multiplication")` when the product does not fit in an int.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::mul_int, Trap};
/// assert_eq!(mul_int(-4, 5), Ok(-20));
/// assert_eq!(mul_int(i64::MAX, 2), Err(Trap::Overflow("multiplication")));
/// ```
pub fn mul_int(a: i64, b: i64) -> Result<i64> {
    a.checked_mul(b).ok_or(Trap::Overflow("multiplication"))
}

/// Divides `a` by `b`, truncating the quotient toward zero (`-7 / 2 == -3`).
///
/// # Errors
///
/// [`Trap::DivisionByZero`] when `b` is 0, and [`Trap::Overflow`]`("division")` for
/// `i64::MIN / -1`, whose exact result does not fit in an int.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::div_int, Trap};
/// assert_eq!(div_int(-7, 2), Ok(-3));
/// assert_eq!(div_int(1, 0), Err(Trap::DivisionByZero));
/// assert_eq!(div_int(i64::MIN, -1), Err(Trap::Overflow("division")));
/// ```
pub fn div_int(a: i64, b: i64) -> Result<i64> {
    if b == 0 {
        return Err(Trap::DivisionByZero);
    }
    a.checked_div(b).ok_or(Trap::Overflow("division"))
}

/// Returns the remainder of truncating division; its sign follows the dividend `a`
/// (`-7 % 2 == -1`), so `div_int(a, b) * b + rem_int(a, b) == a`.
///
/// # Errors
///
/// [`Trap::DivisionByZero`] when `b` is 0, and [`Trap::Overflow`]`("remainder")` for
/// `i64::MIN % -1`, matching the trap of the corresponding division.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::rem_int, Trap};
/// assert_eq!(rem_int(-7, 2), Ok(-1));
/// assert_eq!(rem_int(7, -2), Ok(1));
/// assert_eq!(rem_int(7, 0), Err(Trap::DivisionByZero));
/// ```
pub fn rem_int(a: i64, b: i64) -> Result<i64> {
    if b == 0 {
        return Err(Trap::DivisionByZero);
    }
    a.checked_rem(b).ok_or(Trap::Overflow("remainder"))
}

/// Negates an int exactly.
///
/// # Errors
///
/// [`Trap::Overflow`]`("negation")` for `i64::MIN`, whose negation does not fit.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::neg_int, Trap};
/// assert_eq!(neg_int(5), Ok(-5));
/// assert_eq!(neg_int(i64::MIN), Err(Trap::Overflow("negation")));
/// ```
pub fn neg_int(a: i64) -> Result<i64> {
    a.checked_neg().ok_or(Trap::Overflow("negation"))
}

/// Returns `value` when it is finite, otherwise the non-finite trap for `op`.
fn finite(value: f64, op: &'static str) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Trap::NonFinite(op))
    }
}

/// Adds two floats with IEEE 754 rounding and insists the sum is finite.
///
/// # Errors
///
/// [`Trap::NonFinite`]`("addition")` when the sum overflows to infinity (or an input
/// was already non-finite).
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::add_float, Trap};
/// assert_eq!(add_float(0.5, 0.25), Ok(0.75));
/// assert_eq!(add_float(f64::MAX, f64::MAX), Err(Trap::NonFinite("addition")));
/// ```
pub fn add_float(a: f64, b: f64) -> Result<f64> {
    finite(a + b, "addition")
}

/// Subtracts `b` from `a` with IEEE 754 rounding and insists the result is finite.
///
/// # Errors
///
/// [`Trap::NonFinite`]`("subtraction")` when the difference overflows to infinity.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::sub_float, Trap};
/// assert_eq!(sub_float(1.0, 0.25), Ok(0.75));
/// assert_eq!(sub_float(f64::MIN, f64::MAX), Err(Trap::NonFinite("subtraction")));
/// ```
pub fn sub_float(a: f64, b: f64) -> Result<f64> {
    finite(a - b, "subtraction")
}

/// Multiplies two floats with IEEE 754 rounding and insists the product is finite.
///
/// # Errors
///
/// [`Trap::NonFinite`]`("multiplication")` when the product overflows to infinity.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::mul_float, Trap};
/// assert_eq!(mul_float(1.5, 4.0), Ok(6.0));
/// assert_eq!(mul_float(1e200, 1e200), Err(Trap::NonFinite("multiplication")));
/// ```
pub fn mul_float(a: f64, b: f64) -> Result<f64> {
    finite(a * b, "multiplication")
}

/// Divides `a` by `b` with IEEE 754 rounding; dividing by zero is a trap rather than
/// an infinity so the error points at the division that caused it.
///
/// # Errors
///
/// [`Trap::DivisionByZero`] when `b` is `0.0` or `-0.0`, and
/// [`Trap::NonFinite`]`("division")` when the quotient overflows to infinity.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::div_float, Trap};
/// assert_eq!(div_float(1.0, 4.0), Ok(0.25));
/// assert_eq!(div_float(1.0, 0.0), Err(Trap::DivisionByZero));
/// assert_eq!(div_float(f64::MAX, 0.5), Err(Trap::NonFinite("division")));
/// ```
pub fn div_float(a: f64, b: f64) -> Result<f64> {
    if b == 0.0 {
        return Err(Trap::DivisionByZero);
    }
    finite(a / b, "division")
}

/// Returns the float remainder of truncating division (Rust's `%`, C's `fmod`): the
/// result has the sign of `a` and a magnitude smaller than `b`'s.
///
/// # Errors
///
/// [`Trap::DivisionByZero`] when `b` is `0.0` or `-0.0`, and
/// [`Trap::NonFinite`]`("remainder")` if the result is not finite.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::rem_float, Trap};
/// assert_eq!(rem_float(-7.5, 2.0), Ok(-1.5));
/// assert_eq!(rem_float(1.0, 0.0), Err(Trap::DivisionByZero));
/// ```
pub fn rem_float(a: f64, b: f64) -> Result<f64> {
    if b == 0.0 {
        return Err(Trap::DivisionByZero);
    }
    finite(a % b, "remainder")
}

/// Returns the absolute value of an int exactly.
///
/// # Errors
///
/// [`Trap::Overflow`]`("abs")` for `i64::MIN`, whose absolute value does not fit.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::abs_int, Trap};
/// assert_eq!(abs_int(-3), Ok(3));
/// assert_eq!(abs_int(i64::MIN), Err(Trap::Overflow("abs")));
/// ```
pub fn abs_int(a: i64) -> Result<i64> {
    a.checked_abs().ok_or(Trap::Overflow("abs"))
}

/// Returns the absolute value of a float; it cannot fail because negating a finite
/// float is finite (`-0.0` becomes `0.0`).
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::math::abs_float(-2.5), 2.5);
/// ```
pub fn abs_float(a: f64) -> f64 {
    a.abs()
}

/// Returns the smaller of two ints.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::math::min_int(3, -1), -1);
/// ```
pub fn min_int(a: i64, b: i64) -> i64 {
    a.min(b)
}

/// Returns the larger of two ints.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::math::max_int(3, -1), 3);
/// ```
pub fn max_int(a: i64, b: i64) -> i64 {
    a.max(b)
}

/// Returns the smaller of two floats under IEEE 754 total order, so the answer is
/// deterministic even for zeros of different sign (`-0.0` is smaller than `0.0`).
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::math::min_float;
/// assert_eq!(min_float(1.5, -2.0), -2.0);
/// assert!(min_float(0.0, -0.0).is_sign_negative());
/// ```
pub fn min_float(a: f64, b: f64) -> f64 {
    if b.total_cmp(&a).is_lt() { b } else { a }
}

/// Returns the larger of two floats under IEEE 754 total order, so the answer is
/// deterministic even for zeros of different sign (`0.0` is larger than `-0.0`).
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::math::max_float;
/// assert_eq!(max_float(1.5, -2.0), 1.5);
/// assert!(max_float(-0.0, 0.0).is_sign_positive());
/// ```
pub fn max_float(a: f64, b: f64) -> f64 {
    if b.total_cmp(&a).is_gt() { b } else { a }
}

/// -2^63 (i64::MIN), exactly representable as f64.
const INT_MIN_AS_FLOAT: f64 = -9_223_372_036_854_775_808.0;
/// 2^63, the smallest f64 above i64::MAX (i64::MAX itself is not representable).
const INT_END_AS_FLOAT: f64 = 9_223_372_036_854_775_808.0;

/// Converts an already-integral float to an int, or traps if it is out of range.
fn integral_to_int(integral: f64, input: f64, op: &str) -> Result<i64> {
    if (INT_MIN_AS_FLOAT..INT_END_AS_FLOAT).contains(&integral) {
        // In range and integral, so the cast is exact.
        Ok(integral as i64)
    } else {
        Err(Trap::InvalidConversion(format!(
            "{op}({}) is outside the int range {}..={}",
            format_float(input),
            i64::MIN,
            i64::MAX
        )))
    }
}

/// Rounds a float to the nearest int, with halves rounded away from zero
/// (`2.5 → 3`, `-2.5 → -3`).
///
/// # Errors
///
/// [`Trap::InvalidConversion`] when the rounded value does not fit in an int.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::math::round;
/// assert_eq!(round(2.5), Ok(3));
/// assert_eq!(round(-2.5), Ok(-3));
/// assert!(round(1e19).is_err());
/// ```
pub fn round(f: f64) -> Result<i64> {
    integral_to_int(f.round(), f, "round")
}

/// Rounds a float down, toward negative infinity, to an int (`-1.5 → -2`).
///
/// # Errors
///
/// [`Trap::InvalidConversion`] when the result does not fit in an int.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::math::floor;
/// assert_eq!(floor(-1.5), Ok(-2));
/// assert_eq!(floor(1.9), Ok(1));
/// ```
pub fn floor(f: f64) -> Result<i64> {
    integral_to_int(f.floor(), f, "floor")
}

/// Rounds a float up, toward positive infinity, to an int (`-1.5 → -1`).
///
/// # Errors
///
/// [`Trap::InvalidConversion`] when the result does not fit in an int.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::math::ceil;
/// assert_eq!(ceil(-1.5), Ok(-1));
/// assert_eq!(ceil(1.1), Ok(2));
/// ```
pub fn ceil(f: f64) -> Result<i64> {
    integral_to_int(f.ceil(), f, "ceil")
}

/// Converts a float to an int by dropping the fractional part (truncating toward
/// zero: `-1.9 → -1`).
///
/// # Errors
///
/// [`Trap::InvalidConversion`] when the truncated value does not fit in an int; note
/// that `9.223372036854776e18` (2^63) is just out of range while `-2^63` is in range.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::math::to_int;
/// assert_eq!(to_int(-1.9), Ok(-1));
/// assert_eq!(to_int(-9.223372036854776e18), Ok(i64::MIN));
/// assert!(to_int(9.223372036854776e18).is_err());
/// ```
pub fn to_int(f: f64) -> Result<i64> {
    integral_to_int(f.trunc(), f, "to_int")
}

/// Converts an int to the nearest float; ints beyond 2^53 in magnitude may lose their
/// lowest bits, as with any f64.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::math::to_float(3), 3.0);
/// ```
pub fn to_float(i: i64) -> f64 {
    i as f64
}

/// Raises `base` to the non-negative power `exp` exactly (`pow_int(x, 0) == 1` for
/// every `x`, including 0).
///
/// # Errors
///
/// [`Trap::OutOfRange`] when `exp` is negative (the result would not be an int), and
/// [`Trap::Overflow`]`("power")` when the result does not fit in an int.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{math::pow_int, Trap};
/// assert_eq!(pow_int(-2, 3), Ok(-8));
/// assert_eq!(pow_int(2, 63), Err(Trap::Overflow("power")));
/// assert!(pow_int(2, -1).is_err());
/// ```
pub fn pow_int(base: i64, exp: i64) -> Result<i64> {
    if exp < 0 {
        return Err(Trap::OutOfRange(format!(
            "pow exponent must not be negative, got {exp}"
        )));
    }
    match base {
        _ if exp == 0 => Ok(1),
        0 | 1 => Ok(base),
        -1 => Ok(if exp % 2 == 0 { 1 } else { -1 }),
        // |base| >= 2 overflows long before the exponent leaves u32.
        _ => u32::try_from(exp)
            .ok()
            .and_then(|e| base.checked_pow(e))
            .ok_or(Trap::Overflow("power")),
    }
}

/// Returns the square root of a non-negative float (`sqrt(-0.0)` is `-0.0`).
///
/// # Errors
///
/// [`Trap::OutOfRange`] when the input is negative, and [`Trap::NonFinite`]`("sqrt")`
/// if the result is not finite (only possible for a non-finite input).
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::math::sqrt;
/// assert_eq!(sqrt(2.25), Ok(1.5));
/// assert!(sqrt(-1.0).is_err());
/// ```
pub fn sqrt(f: f64) -> Result<f64> {
    if f < 0.0 {
        return Err(Trap::OutOfRange(format!(
            "sqrt of negative number {}",
            format_float(f)
        )));
    }
    finite(f.sqrt(), "sqrt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_arithmetic_is_checked() {
        assert_eq!(add_int(i64::MAX, 0), Ok(i64::MAX));
        assert_eq!(add_int(i64::MAX, 1), Err(Trap::Overflow("addition")));
        assert_eq!(add_int(i64::MIN, -1), Err(Trap::Overflow("addition")));
        assert_eq!(sub_int(i64::MIN, 1), Err(Trap::Overflow("subtraction")));
        assert_eq!(sub_int(0, i64::MIN), Err(Trap::Overflow("subtraction")));
        assert_eq!(sub_int(-1, i64::MIN), Ok(i64::MAX));
        assert_eq!(mul_int(i64::MIN, -1), Err(Trap::Overflow("multiplication")));
        assert_eq!(mul_int(i64::MIN, 1), Ok(i64::MIN));
        assert_eq!(
            mul_int(1 << 32, 1 << 31),
            Err(Trap::Overflow("multiplication"))
        );
        assert_eq!(neg_int(i64::MIN), Err(Trap::Overflow("negation")));
        assert_eq!(neg_int(i64::MAX), Ok(-i64::MAX));
        assert_eq!(neg_int(0), Ok(0));
    }

    #[test]
    fn int_division() {
        assert_eq!(div_int(7, 2), Ok(3));
        assert_eq!(div_int(-7, 2), Ok(-3));
        assert_eq!(div_int(7, -2), Ok(-3));
        assert_eq!(div_int(-7, -2), Ok(3));
        assert_eq!(div_int(0, 0), Err(Trap::DivisionByZero));
        assert_eq!(div_int(i64::MIN, 0), Err(Trap::DivisionByZero));
        assert_eq!(div_int(i64::MIN, -1), Err(Trap::Overflow("division")));
        assert_eq!(div_int(i64::MIN, 1), Ok(i64::MIN));
        assert_eq!(rem_int(7, 2), Ok(1));
        assert_eq!(rem_int(-7, 2), Ok(-1));
        assert_eq!(rem_int(7, -2), Ok(1));
        assert_eq!(rem_int(-7, -2), Ok(-1));
        assert_eq!(rem_int(5, 0), Err(Trap::DivisionByZero));
        assert_eq!(rem_int(i64::MIN, -1), Err(Trap::Overflow("remainder")));
        assert_eq!(rem_int(i64::MIN, i64::MAX), Ok(-1));
    }

    #[test]
    fn float_arithmetic_stays_finite() {
        assert_eq!(add_float(0.1, 0.2), Ok(0.30000000000000004));
        assert_eq!(
            add_float(f64::MAX, f64::MAX),
            Err(Trap::NonFinite("addition"))
        );
        assert_eq!(
            add_float(f64::INFINITY, 1.0),
            Err(Trap::NonFinite("addition"))
        );
        assert_eq!(add_float(f64::NAN, 1.0), Err(Trap::NonFinite("addition")));
        assert_eq!(
            sub_float(-f64::MAX, f64::MAX),
            Err(Trap::NonFinite("subtraction"))
        );
        assert_eq!(sub_float(3.0, 1.0), Ok(2.0));
        assert_eq!(
            mul_float(1e300, 1e10),
            Err(Trap::NonFinite("multiplication"))
        );
        assert_eq!(mul_float(-3.0, 0.5), Ok(-1.5));
        assert_eq!(div_float(1.0, 0.0), Err(Trap::DivisionByZero));
        assert_eq!(div_float(1.0, -0.0), Err(Trap::DivisionByZero));
        assert_eq!(div_float(0.0, 0.0), Err(Trap::DivisionByZero));
        assert_eq!(div_float(1e308, 1e-308), Err(Trap::NonFinite("division")));
        assert_eq!(div_float(-9.0, 3.0), Ok(-3.0));
        assert_eq!(rem_float(1.0, 0.0), Err(Trap::DivisionByZero));
        assert_eq!(rem_float(1.0, -0.0), Err(Trap::DivisionByZero));
        assert_eq!(rem_float(7.5, 2.0), Ok(1.5));
        assert_eq!(rem_float(-7.5, -2.0), Ok(-1.5));
        assert_eq!(
            rem_float(f64::INFINITY, 2.0),
            Err(Trap::NonFinite("remainder"))
        );
    }

    #[test]
    fn abs_min_max() {
        assert_eq!(abs_int(i64::MIN), Err(Trap::Overflow("abs")));
        assert_eq!(abs_int(i64::MIN + 1), Ok(i64::MAX));
        assert_eq!(abs_int(0), Ok(0));
        assert_eq!(abs_float(-0.0).to_bits(), 0.0f64.to_bits());
        assert_eq!(abs_float(-1.5), 1.5);
        assert_eq!(min_int(i64::MIN, i64::MAX), i64::MIN);
        assert_eq!(max_int(i64::MIN, i64::MAX), i64::MAX);
        assert_eq!(min_float(2.0, 1.0), 1.0);
        assert_eq!(max_float(2.0, 1.0), 2.0);
        assert_eq!(min_float(-0.0, 0.0).to_bits(), (-0.0f64).to_bits());
        assert_eq!(min_float(0.0, -0.0).to_bits(), (-0.0f64).to_bits());
        assert_eq!(max_float(-0.0, 0.0).to_bits(), 0.0f64.to_bits());
        assert_eq!(max_float(0.0, -0.0).to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn rounding_conversions() {
        assert_eq!(round(0.5), Ok(1));
        assert_eq!(round(-0.5), Ok(-1));
        assert_eq!(round(1.4999999999999998), Ok(1));
        assert_eq!(round(-0.4), Ok(0));
        assert_eq!(floor(-0.5), Ok(-1));
        assert_eq!(floor(2.0), Ok(2));
        assert_eq!(ceil(-0.5), Ok(0));
        assert_eq!(ceil(2.0000000000000004), Ok(3));
        assert_eq!(to_int(2.9), Ok(2));
        assert_eq!(to_int(-2.9), Ok(-2));
        assert_eq!(to_int(-0.0), Ok(0));
    }

    #[test]
    fn conversion_range_edges() {
        let two_63 = 9.223372036854776e18;
        let below_two_63 = 9.223_372_036_854_775e18; // largest f64 below 2^63
        assert!(below_two_63 < two_63);
        for f in [to_int, round, floor, ceil] {
            assert!(matches!(f(two_63), Err(Trap::InvalidConversion(_))));
            assert!(matches!(
                f(-two_63 * 1.0000000000000002),
                Err(Trap::InvalidConversion(_))
            ));
            assert_eq!(f(-two_63), Ok(i64::MIN));
            assert_eq!(f(below_two_63), Ok(9_223_372_036_854_774_784));
            assert!(matches!(f(f64::NAN), Err(Trap::InvalidConversion(_))));
            assert!(matches!(f(f64::INFINITY), Err(Trap::InvalidConversion(_))));
            assert!(matches!(
                f(f64::NEG_INFINITY),
                Err(Trap::InvalidConversion(_))
            ));
            assert!(matches!(f(f64::MAX), Err(Trap::InvalidConversion(_))));
        }
        assert_eq!(
            to_int(1e19),
            Err(Trap::InvalidConversion(
                "to_int(1e19) is outside the int range -9223372036854775808..=9223372036854775807"
                    .to_string()
            ))
        );
        assert_eq!(to_float(i64::MIN), -two_63);
        assert_eq!(to_float(i64::MAX), two_63);
        assert_eq!(to_float(-3), -3.0);
    }

    #[test]
    fn power() {
        assert_eq!(pow_int(0, 0), Ok(1));
        assert_eq!(pow_int(5, 0), Ok(1));
        assert_eq!(pow_int(0, i64::MAX), Ok(0));
        assert_eq!(pow_int(1, i64::MAX), Ok(1));
        assert_eq!(pow_int(-1, i64::MAX), Ok(-1));
        assert_eq!(pow_int(-1, i64::MAX - 1), Ok(1));
        assert_eq!(pow_int(2, 62), Ok(1 << 62));
        assert_eq!(pow_int(2, 63), Err(Trap::Overflow("power")));
        assert_eq!(pow_int(-2, 63), Ok(i64::MIN));
        assert_eq!(pow_int(-2, 64), Err(Trap::Overflow("power")));
        assert_eq!(pow_int(2, i64::MAX), Err(Trap::Overflow("power")));
        assert_eq!(pow_int(2, 1 << 40), Err(Trap::Overflow("power")));
        assert_eq!(pow_int(10, 18), Ok(1_000_000_000_000_000_000));
        assert_eq!(pow_int(10, 19), Err(Trap::Overflow("power")));
        assert!(matches!(pow_int(2, -1), Err(Trap::OutOfRange(_))));
        assert!(matches!(pow_int(0, i64::MIN), Err(Trap::OutOfRange(_))));
    }

    #[test]
    fn square_root() {
        assert_eq!(sqrt(0.0), Ok(0.0));
        assert_eq!(sqrt(-0.0).map(f64::to_bits), Ok((-0.0f64).to_bits()));
        assert_eq!(sqrt(4.0), Ok(2.0));
        assert_eq!(sqrt(f64::MAX), Ok(1.3407807929942596e154));
        assert!(matches!(sqrt(-1e-300), Err(Trap::OutOfRange(_))));
        assert!(matches!(sqrt(f64::NEG_INFINITY), Err(Trap::OutOfRange(_))));
        assert_eq!(sqrt(f64::INFINITY), Err(Trap::NonFinite("sqrt")));
        assert_eq!(sqrt(f64::NAN), Err(Trap::NonFinite("sqrt")));
    }
}
