//! Summaries over seeds: mean, sample standard deviation and the 95% confidence interval of
//! the mean from Student's t distribution.
//!
//! A leaderboard reports each accuracy as `mean ± h` with `h = t_{0.975, n−1} · s / √n`, where
//! `s` is the sample standard deviation (n − 1 in the denominator). With a handful of seeds the
//! t quantile is far from the normal 1.96 (12.71 for two seeds, 4.30 for three), which is the
//! point: three seeds do not pin a mean down to the third decimal.
//!
//! The quantile is computed, not looked up: the t distribution function is expressed through
//! the regularised incomplete beta function (continued fraction, modified Lentz), and the
//! quantile is found by bisection. That works for any number of degrees of freedom.
//!
//! It is written here rather than taken from `statrs`: statrs 0.19's `StudentsT::inverse_cdf`
//! drifts away from the normal limit as the degrees of freedom grow (1.95985 at 10⁶ and 1.8266
//! at 10⁷, where the quantile is 1.95996), while this bisection stays within 10⁻⁵ of it and
//! within the published tables' last digit for small ones; the whole of it is the hundred
//! lines below, each tested against a closed form or a table.
//!
//! ```
//! use dmlbench_leaderboard::stats::{student_t_quantile, Summary};
//!
//! assert!((student_t_quantile(0.975, 2.0) - 4.3027).abs() < 1e-4);
//! let s = Summary::of(&[0.60, 0.62, 0.67]).unwrap();
//! assert!((s.mean - 0.63).abs() < 1e-12);
//! assert!((s.half_width.unwrap() - 0.0896).abs() < 1e-4);
//! assert_eq!(Summary::of(&[0.5]).unwrap().half_width, None);
//! ```

use serde::Serialize;

/// Confidence level of every interval on a leaderboard.
pub const CONFIDENCE: f64 = 0.95;

/// Mean and 95% confidence interval of a few values (one per seed).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// How many values.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1 denominator); `None` for one value.
    pub sd: Option<f64>,
    /// Half-width of the 95% interval of the mean, `t_{0.975,n−1} · sd / √n`; `None` for one
    /// value, where no interval can be given.
    pub half_width: Option<f64>,
}

impl Summary {
    /// Summarises `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let n = values.len();
        let mean = mean(values)?;
        let sd = sample_sd(values);
        let half_width = sd.map(|s| student_t_quantile(0.5 + CONFIDENCE / 2.0, (n - 1) as f64) * s / (n as f64).sqrt());
        Some(Summary { n, mean, sd, half_width })
    }

    /// Lower end of the interval (the mean itself when there is no interval).
    pub fn low(&self) -> f64 {
        self.mean - self.half_width.unwrap_or(0.0)
    }

    /// Upper end of the interval (the mean itself when there is no interval).
    pub fn high(&self) -> f64 {
        self.mean + self.half_width.unwrap_or(0.0)
    }

    /// Whether the two intervals share a point (a summary without an interval is the point of
    /// its mean). Overlapping intervals do not show that the means differ.
    pub fn overlaps(&self, other: &Summary) -> bool {
        // Interval ends are sums of rounded numbers: allow for the last bits, nothing more.
        const SLACK: f64 = 1e-12;
        self.low() <= other.high() + SLACK && other.low() <= self.high() + SLACK
    }
}

/// Arithmetic mean; `None` for no values.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Sample standard deviation with n − 1 in the denominator; `None` for fewer than two values.
pub fn sample_sd(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = mean(values)?;
    let squares: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    Some((squares / (values.len() - 1) as f64).sqrt())
}

/// Distribution function of Student's t with `df` degrees of freedom at `t`.
///
/// For t ≥ 0, `F(t) = 1 − ½ · I_{df/(df+t²)}(df/2, ½)`, with `I` the regularised incomplete
/// beta function; the distribution is symmetric about 0.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    assert!(df > 0.0, "degrees of freedom must be positive, got {df}");
    if t.is_nan() {
        return f64::NAN;
    }
    let tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// The `p`-quantile of Student's t with `df` degrees of freedom, for 0 < p < 1.
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "a quantile needs 0 < p < 1, got {p}");
    if p < 0.5 {
        return -student_t_quantile(1.0 - p, df);
    }
    // Bracket the root: the distribution function is increasing, F(0) = ½ ≤ p.
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while student_t_cdf(hi, df) < p {
        lo = hi;
        hi *= 2.0;
    }
    // Bisection to the resolution of f64: slow only next to Newton, and it cannot diverge.
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if student_t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Regularised incomplete beta function `I_x(a, b)`, for a, b > 0 and 0 ≤ x ≤ 1.
pub fn regularized_incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let log_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    // The continued fraction converges quickly only below the mean of the beta distribution;
    // above it, use the symmetry I_x(a, b) = 1 − I_{1−x}(b, a).
    if x < (a + 1.0) / (a + b + 2.0) {
        log_front.exp() * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - log_front.exp() * beta_continued_fraction(b, a, 1.0 - x) / b
    }
}

/// The continued fraction of the incomplete beta function, evaluated with the modified
/// Lentz method (each convergent from the previous one, guarding against zero denominators).
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    for m in 1..=500 {
        let m = m as f64;
        // Even step: d_{2m} = m (b − m) x / ((a + 2m − 1)(a + 2m)).
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        h *= d * c;
        // Odd step: d_{2m+1} = −(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// Natural logarithm of the gamma function for x > 0 (Lanczos approximation, g = 7, nine
/// coefficients: about 15 correct digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    // The published coefficients, digit for digit, so they can be compared with the source.
    #[allow(clippy::excessive_precision)]
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_93,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_13,
        -176.615_029_162_140_59,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_571_6e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut series = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        series += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_published_tables() {
        // Two-sided 95% critical values t_{0.975, df} from any statistics textbook table
        // (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2), to the table's 3 decimals.
        let table = [
            (1.0, 12.706),
            (2.0, 4.303),
            (3.0, 3.182),
            (4.0, 2.776),
            (5.0, 2.571),
            (9.0, 2.262),
            (10.0, 2.228),
            (19.0, 2.093),
            (29.0, 2.045),
            (100.0, 1.984),
        ];
        for (df, expected) in table {
            let t = student_t_quantile(0.975, df);
            assert!((t - expected).abs() < 5e-4, "t_(0.975, {df}) = {t}, table says {expected}");
        }
        // Far out, t tends to the normal quantile 1.959964.
        assert!((student_t_quantile(0.975, 1e7) - 1.959964).abs() < 1e-5);
        // Symmetry and the median.
        assert!((student_t_quantile(0.025, 4.0) + student_t_quantile(0.975, 4.0)).abs() < 1e-12);
        assert!(student_t_quantile(0.5, 3.0).abs() < 1e-12);
    }

    #[test]
    fn t_distribution_matches_closed_forms() {
        // df = 1 is the Cauchy distribution: F(t) = ½ + atan(t)/π.
        // df = 2 has F(t) = ½ + t / (2 √(2 + t²)).
        for t in [-30.0, -4.0, -1.0, -0.25, 0.0, 0.3, 1.0, 2.5, 12.706, 100.0] {
            let cauchy = 0.5 + f64::atan(t) / std::f64::consts::PI;
            assert!((student_t_cdf(t, 1.0) - cauchy).abs() < 1e-12, "df 1 at {t}");
            let two = 0.5 + t / (2.0 * (2.0 + t * t).sqrt());
            assert!((student_t_cdf(t, 2.0) - two).abs() < 1e-12, "df 2 at {t}");
        }
        // Inverse of df = 2 in closed form: t = (2p − 1) √(2 / (4p(1 − p))).
        let p: f64 = 0.975;
        let exact = (2.0 * p - 1.0) * (2.0 / (4.0 * p * (1.0 - p))).sqrt();
        assert!((student_t_quantile(p, 2.0) - exact).abs() < 1e-9);
    }

    #[test]
    fn ln_gamma_matches_factorials_and_sqrt_pi() {
        // Γ(n) = (n − 1)!, Γ(½) = √π.
        let mut factorial = 1.0_f64;
        for n in 1..20 {
            assert!((ln_gamma(n as f64) - factorial.ln()).abs() < 1e-10, "n = {n}");
            factorial *= n as f64;
        }
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        assert!((ln_gamma(0.25) - 3.625_609_908_221_908_f64.ln()).abs() < 1e-10);
    }

    #[test]
    fn incomplete_beta_matches_special_cases() {
        // I_x(a, 1) = x^a and I_x(1, b) = 1 − (1 − x)^b.
        for x in [0.01, 0.2, 0.5, 0.77, 0.999] {
            assert!((regularized_incomplete_beta(3.5, 1.0, x) - x.powf(3.5)).abs() < 1e-12);
            assert!((regularized_incomplete_beta(1.0, 2.5, x) - (1.0 - (1.0 - x).powf(2.5))).abs() < 1e-12);
        }
        assert_eq!(regularized_incomplete_beta(2.0, 3.0, 0.0), 0.0);
        assert_eq!(regularized_incomplete_beta(2.0, 3.0, 1.0), 1.0);
    }

    #[test]
    fn summaries_by_hand() {
        // 0.60, 0.62, 0.67: mean 0.63; deviations −0.03, −0.01, 0.04; squares sum 0.0026;
        // s = √(0.0026 / 2) = 0.0360555; h = 4.302653 · 0.0360555 / √3 = 0.0895669.
        let s = Summary::of(&[0.60, 0.62, 0.67]).unwrap();
        assert_eq!(s.n, 3);
        assert!((s.mean - 0.63).abs() < 1e-12);
        assert!((s.sd.unwrap() - 0.036_055_5).abs() < 1e-7);
        assert!((s.half_width.unwrap() - 0.089_566_9).abs() < 1e-6);
        assert!((s.low() - (0.63 - 0.089_566_9)).abs() < 1e-6 && (s.high() - (0.63 + 0.089_566_9)).abs() < 1e-6);
        // Two values 1 and 3: mean 2, s = √2, h = 12.7062 · √2 / √2 = 12.7062.
        let two = Summary::of(&[1.0, 3.0]).unwrap();
        assert!((two.half_width.unwrap() - 12.706_2).abs() < 1e-4);
        // One value: no spread, no interval; the interval ends are the value.
        let one = Summary::of(&[0.7]).unwrap();
        assert_eq!((one.n, one.sd, one.half_width, one.low(), one.high()), (1, None, None, 0.7, 0.7));
        assert_eq!(Summary::of(&[]), None);
    }
}
