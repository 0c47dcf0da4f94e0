//! Weights in and out: import timm state dicts and DeepMind Haiku trees so that our network computes their function,
//! load weights into a network (`model.init_from`), and export ours to timm's layout and DeepMind's naming.
//!
//! - `names`: the key-mapping tables (ours <-> timm, ours <-> Haiku) and the tensor layouts, as data.
//! - `fold`: the exact folds of timm's parametrisation into ours (WS epsilon, where gamma sits, SkipInit), with the
//!   algebra.
//! - `read`: safetensors, PyTorch zip pickles (candle's pickle reader) and npz archives in; safetensors out.
//!
//! What an imported network needs beyond its tensors (the activation variant, the padding mode, the shortcut) is a
//! [`ModelConfig`] written into the file's metadata ([`WEIGHTS_META_KEY`]), so loading it builds the same function.
//!
//! Supported exactly: timm's `dm_nfnet_f0..f6` (erf GELU, 'SAME' padding, gamma in the activations, SkipInit), its
//! `nf_resnet26/50/101` (symmetric padding, average-pool shortcuts, gamma folded out of the convs, no SkipInit), its
//! non-`dm_` `nfnet_f0..f7` (the same switches as `nf_resnet50` on NFNet blocks), and DeepMind's NFNet-F0..F7 Haiku
//! trees (flattened to `module/leaf` in an npz or safetensors file). Not supported: timm's `nf_regnet_*` (RegNet
//! blocks, SE in the middle), `nf_seresnet*` (SE ratio 1/16 after the block, a layout we have no table row for),
//! `nf_ecaresnet*` / `eca_nfnet_*` (ECA attention) and `nfnet_l0` (other widths and SE rounding): importing one
//! fails with the first key no rule covers.

pub mod fold;
pub mod names;
pub mod read;

pub use read::{read_tensors, write_safetensors, TensorFile};
mod error;
mod export;
mod import;
mod load;
mod timm;

pub use error::WeightsError;
pub use export::*;
pub use import::*;
pub use load::*;
pub use timm::*;

/// Safetensors metadata key holding [`WeightsMeta`] as JSON.
pub const WEIGHTS_META_KEY: &str = "nfbench_weights";
/// The prefix of parameters in a run's checkpoint (`crate::record::checkpoint`'s convention).
pub const CHECKPOINT_PARAM_PREFIX: &str = "param/";
/// The prefix of the EMA weights in a run's checkpoint.
pub const CHECKPOINT_EMA_PREFIX: &str = "ema/";
/// The prefix of BatchNorm buffers in a run's checkpoint.
pub const CHECKPOINT_BUFFER_PREFIX: &str = "buffer/";

/// What can go wrong reading, mapping or writing weights. Every error names the file, and the tensor where one is
type Result<T> = std::result::Result<T, WeightsError>;
