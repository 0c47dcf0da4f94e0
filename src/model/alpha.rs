//! The residual scale alpha's rule, written once: the model builder, [`super::Network::try_set_alpha`], the
//! trainer's preset check and the preset's field table all call [`validate`] / [`is_valid`].

use super::ModelError;

/// The rule in words, as the field table and error messages show it.
pub const RULE: &str = "0 < alpha <= 1";

/// Whether `alpha` is a usable residual scale: finite and in (0, 1].
pub fn is_valid(alpha: f64) -> bool {
    alpha.is_finite() && alpha > 0.0 && alpha <= 1.0
}

/// [`is_valid`], with the error naming `model.alpha` and the rule.
pub fn validate(alpha: f64) -> Result<(), ModelError> {
    if is_valid(alpha) {
        Ok(())
    } else {
        Err(ModelError::invalid(
            "model.alpha",
            alpha,
            format!("expected {RULE}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_is_valid_in_the_half_open_unit_interval() {
        assert!(is_valid(1.0) && is_valid(0.2) && is_valid(f64::MIN_POSITIVE));
        assert!(!is_valid(0.0) && !is_valid(1.0001) && !is_valid(-0.5) && !is_valid(f64::NAN));
        assert!(validate(f64::INFINITY)
            .unwrap_err()
            .to_string()
            .contains(RULE));
    }
}
