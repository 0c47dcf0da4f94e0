//! Adaptive Gradient Clipping, SGD with Nesterov momentum, schedules, EMA and the label-smoothed loss.
//!
//! Everything here is a pure tensor function or a small optimiser state over named parameters, so each piece can be
//! tested alone against hand-computed values; the trainer (`crate::train`) composes them in the order the NFNet
//! recipe prescribes: gradients -> AGC -> coupled weight decay -> momentum -> update -> EMA.

pub mod agc;
pub mod ema;
pub mod groups;
pub mod loss;
pub mod schedule;
pub mod sgd;

pub use agc::{adaptive_clip, AgcStatsRow};
pub use ema::{Ema, EmaSchedule, EmaWarmup};
pub use groups::ParamGroups;
pub use loss::{smoothed_cross_entropy, top_k_correct, LossKind, Targets};
pub use schedule::LrSchedule;
pub use sgd::{Sgd, SgdConfig};
