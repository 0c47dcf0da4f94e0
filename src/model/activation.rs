//! Nonlinearities and their gamma: `act_gamma(x) = gamma * act(x)`, with gamma chosen so that the output of a
//! unit-Gaussian input has unit variance (the reference's table, `base.nonlinearities`).
//!
//! Every activation is written with ops candle can differentiate (its fused sigmoid/softmax kernels silently drop
//! gradients), so gradients flow through all of them.

use candle_core::{Result, Tensor};

/// One row of the gamma table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivationRow {
    pub name: &'static str,
    pub kind: Activation,
    /// The reference's gamma: 1 / std(act(z)) for z ~ N(0, 1).
    pub gamma: f64,
}

/// The activations an architecture can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// The tanh approximation, as `jax.nn.gelu` computes by default.
    Gelu,
    /// The exact erf form, as `torch.nn.functional.gelu` computes by default (timm's NFNets, `dm_` ones included):
    /// up to ~1e-4 from the tanh form, so an imported timm network needs it to compute timm's function.
    GeluErf,
    Silu,
    Elu,
    /// Negative slope 0.01, as `jax.nn.leaky_relu`.
    LeakyRelu,
    Relu6,
    Tanh,
    Sigmoid,
    Softplus,
    Identity,
}

/// The gamma table, as data. Values are the reference's float32 constants.
pub const ACTIVATIONS: &[ActivationRow] = &[
    ActivationRow {
        name: "relu",
        kind: Activation::Relu,
        gamma: 1.713_958_859_443_664_6,
    },
    ActivationRow {
        name: "gelu",
        kind: Activation::Gelu,
        gamma: 1.701_504_349_708_557_1,
    },
    // timm's table gives the erf form the tanh form's gamma (1.7015043497085571): the same constant, so an imported
    // timm network keeps timm's scaling exactly.
    ActivationRow {
        name: "gelu_erf",
        kind: Activation::GeluErf,
        gamma: 1.701_504_349_708_557_1,
    },
    ActivationRow {
        name: "silu",
        kind: Activation::Silu,
        gamma: 1.788_129_329_681_396_5,
    },
    ActivationRow {
        name: "elu",
        kind: Activation::Elu,
        gamma: 1.271_600_484_848_022_5,
    },
    ActivationRow {
        name: "leaky_relu",
        kind: Activation::LeakyRelu,
        gamma: 1.705_903_411_56,
    },
    ActivationRow {
        name: "relu6",
        kind: Activation::Relu6,
        gamma: 1.713_148_474_693_298_3,
    },
    ActivationRow {
        name: "tanh",
        kind: Activation::Tanh,
        gamma: 1.593_911_767_005_920_4,
    },
    ActivationRow {
        name: "sigmoid",
        kind: Activation::Sigmoid,
        gamma: 4.803_835_391_998_291,
    },
    ActivationRow {
        name: "softplus",
        kind: Activation::Softplus,
        gamma: 1.920_332_312_583_923_3,
    },
    ActivationRow {
        name: "identity",
        kind: Activation::Identity,
        gamma: 1.0,
    },
];

impl Activation {
    /// Look an activation up by its table name.
    pub fn from_name(name: &str) -> Option<Activation> {
        ACTIVATIONS
            .iter()
            .find(|row| row.name == name)
            .map(|row| row.kind)
    }

    /// The table name.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The reference's gamma for this activation.
    pub fn gamma(self) -> f64 {
        self.row().gamma
    }

    fn row(self) -> &'static ActivationRow {
        // Every variant has a row: the table is exhaustive (a test checks it).
        ACTIVATIONS
            .iter()
            .find(|row| row.kind == self)
            .unwrap_or(&ACTIVATIONS[ACTIVATIONS.len() - 1])
    }

    /// `act(x)`, without gamma (the baselines use this).
    pub fn apply_raw(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => crate::kernels::relu(x),
            Activation::Gelu => crate::kernels::gelu(x),
            Activation::GeluErf => crate::kernels::gelu_erf(x),
            Activation::Silu => x.silu(),
            Activation::Elu => x.elu(1.0),
            // relu(x) - 0.01 * relu(-x)
            Activation::LeakyRelu => x.relu()? - (x.neg()?.relu()? * 0.01)?,
            // relu(x) - relu(x - 6) = clamp(x, 0, 6), with a gradient everywhere it should be.
            Activation::Relu6 => x.relu()? - (x - 6.0)?.relu()?,
            Activation::Tanh => x.tanh(),
            // (tanh(x / 2) + 1) / 2: stable for large |x|, differentiable with core ops.
            Activation::Sigmoid => ((x * 0.5)?.tanh()? + 1.0)? * 0.5,
            // relu(x) + log(1 + exp(-|x|)): no overflow for large x.
            Activation::Softplus => x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?,
            Activation::Identity => Ok(x.clone()),
        }
    }

    /// `gamma * act(x)`: what normaliser-free networks use.
    pub fn apply_scaled(self, x: &Tensor) -> Result<Tensor> {
        let y = self.apply_raw(x)?;
        match self {
            Activation::Identity => Ok(y),
            _ => y * self.gamma(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_activation_has_a_row_and_names_round_trip() {
        for row in ACTIVATIONS {
            assert_eq!(Activation::from_name(row.name), Some(row.kind));
            assert_eq!(row.kind.name(), row.name);
            assert_eq!(row.kind.gamma(), row.gamma);
        }
        assert_eq!(Activation::from_name("swish"), None);
    }
}
