//! Checks of configuration values for [`Plugin::new`](crate::Plugin::new), with one wording
//! for every plugin: each returns a [`Error::bad_config`] naming the field and the value.
//!
//! ```
//! use dmlbench_sdk::checks::{finite, in_range, positive};
//! assert!(positive("scale", 3.0).is_ok());
//! assert_eq!(positive("scale", 0.0).unwrap_err().message(), "scale must be a positive number, got 0");
//! assert_eq!(finite("margin", f64::NAN).unwrap_err().message(), "margin must be finite, got NaN");
//! assert_eq!(in_range("alpha", 1.5, 0.0..=1.0).unwrap_err().message(), "alpha must lie in [0, 1], got 1.5");
//! ```

use std::ops::{Bound, RangeBounds};

use crate::error::{Error, Result};

/// `value` is a finite number.
pub fn finite(name: &str, value: f64) -> Result<()> {
    require(value.is_finite(), || format!("{name} must be finite, got {value}"))
}

/// `value` is a finite number above 0.
pub fn positive(name: &str, value: f64) -> Result<()> {
    require(value.is_finite() && value > 0.0, || format!("{name} must be a positive number, got {value}"))
}

/// `value` is a finite number, 0 or above.
pub fn non_negative(name: &str, value: f64) -> Result<()> {
    require(value.is_finite() && value >= 0.0, || format!("{name} must be a non-negative number, got {value}"))
}

/// `value` lies in `range` (`0.0..1.0` for [0, 1), `0.0..=1.0` for [0, 1], `0.0..` for
/// [0, ∞)); NaN never does.
pub fn in_range(name: &str, value: f64, range: impl RangeBounds<f64>) -> Result<()> {
    require(range.contains(&value), || {
        let low = match range.start_bound() {
            Bound::Included(v) => format!("[{v}"),
            Bound::Excluded(v) => format!("({v}"),
            Bound::Unbounded => "(-∞".into(),
        };
        let high = match range.end_bound() {
            Bound::Included(v) => format!("{v}]"),
            Bound::Excluded(v) => format!("{v})"),
            Bound::Unbounded => "∞)".into(),
        };
        format!("{name} must lie in {low}, {high}, got {value}")
    })
}

fn require(ok: bool, message: impl FnOnce() -> String) -> Result<()> {
    if ok { Ok(()) } else { Err(Error::bad_config(message())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<()>) -> String {
        let error = result.unwrap_err();
        assert_eq!(error.status(), dmlbench_abi::Status::BAD_CONFIG);
        error.message().to_string()
    }

    #[test]
    fn each_check_accepts_its_values_and_refuses_the_rest() {
        assert!(finite("m", -1e300).is_ok());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(message(finite("m", bad)), format!("m must be finite, got {bad}"));
        }
        assert!(positive("s", 1e-300).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(message(positive("s", bad)), format!("s must be a positive number, got {bad}"));
        }
        assert!(non_negative("w", 0.0).is_ok());
        for bad in [-1e-9, f64::NAN, f64::INFINITY] {
            assert_eq!(message(non_negative("w", bad)), format!("w must be a non-negative number, got {bad}"));
        }
    }

    #[test]
    fn ranges_name_their_bounds() {
        assert!(in_range("p", 0.0, 0.0..1.0).is_ok());
        assert_eq!(message(in_range("p", 1.0, 0.0..1.0)), "p must lie in [0, 1), got 1");
        assert!(in_range("p", 1.0, 0.0..=1.0).is_ok());
        assert_eq!(message(in_range("p", -0.5, 0.0..=1.0)), "p must lie in [0, 1], got -0.5");
        assert_eq!(message(in_range("p", f64::NAN, 0.0..)), "p must lie in [0, ∞), got NaN");
        assert_eq!(message(in_range("p", 2.0, ..=1.0)), "p must lie in (-∞, 1], got 2");
    }
}
