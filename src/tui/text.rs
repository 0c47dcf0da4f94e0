//! Number and text formatting shared by the panes: compact, fixed-width friendly, never panicking.

use std::time::Duration;

/// A number in at most about 7 characters: 4 significant digits, scientific notation when very small or large.
pub fn num(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        // Two-digit exponents get one digit less, so every number fits 7 columns.
        if (1e-9..1e10).contains(&a) {
            format!("{v:.2e}")
        } else if (1e-99..1e100).contains(&a) {
            format!("{v:.1e}")
        } else {
            format!("{v:.0e}")
        }
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// A fraction in [0, 1] as a percentage, e.g. `7.3%`.
pub fn pct(f: f64) -> String {
    if !f.is_finite() {
        return "-".into();
    }
    let p = f * 100.0;
    if p != 0.0 && p.abs() < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// A duration as `3m12s`, `1h05m`, `45s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Cut `s` to at most `width` characters, ending with `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Keep the end of `s` (e.g. a path) in at most `width` characters, starting with `…` when cut.
pub fn fit_tail(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let tail: String = s.chars().skip(n - (width - 1)).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_compact() {
        assert_eq!(num(0.01), "0.0100");
        assert_eq!(num(2.3456), "2.346");
        assert_eq!(num(212.0), "212.0");
        assert_eq!(num(1e-5), "1.00e-5");
        assert_eq!(num(2.09e-10), "2.1e-10");
        assert_eq!(num(3.0e12), "3.0e12");
        for v in [
            1.234e-7, 9.99e-300, 1e-30, 1.5e20, 123456.0, 0.0012, 99999.0,
        ] {
            assert!(num(v).chars().count() <= 7, "{v} -> {}", num(v));
        }
        assert_eq!(num(0.0), "0");
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(pct(0.073), "7.3%");
        assert_eq!(pct(0.62), "62%");
        assert_eq!(duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(duration(Duration::from_secs(3900)), "1h05m");
    }

    #[test]
    fn fitting_never_exceeds_the_width() {
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("ab", 4), "ab");
        assert_eq!(fit("abc", 0), "");
        assert_eq!(fit_tail("presets/default.toml", 8), "…lt.toml");
        assert_eq!(fit_tail("x", 0), "");
    }
}
