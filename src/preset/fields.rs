//! Every preset field as data: name, type, default, range, live or restart-only, documentation, and the range
//! check that validation runs. `nfbench preset fields` prints this table; validation and [`super::diff`] walk it.
//!
//! The `doc` strings are the user's manual, and this table is its only copy: the schema structs carry no field docs
//! of their own. A test holds the table to exactly one entry per schema field.

use super::schema::Preset;

/// One end of a numeric range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Inclusive(f64),
    Exclusive(f64),
}
use Bound::{Exclusive as Excl, Inclusive as Incl};

/// The rule a field's value must follow beyond its TOML type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// Any value of the right type.
    Any,
    /// A finite float within the optional lower and upper bounds (NaN and infinities are always rejected).
    Float(Option<Bound>, Option<Bound>),
    /// An integer at least this large.
    AtLeast(u64),
    /// A non-empty string (or path).
    NonEmpty,
    /// A list whose items are all non-empty strings.
    NonEmptyItems,
    /// One of these strings (the empty string only when listed).
    Choice(&'static [&'static str]),
    /// The residual scale's rule, [`crate::model::alpha::is_valid`].
    Alpha,
    /// Dropout: 0 <= p < 1, or negative, the old spelling of "the architecture's default" (a value as `--set`
    /// writes it, before deserialisation turns it into the field left out).
    Dropout,
    /// One of [`ACTIVATIONS`], or empty, the old spelling of "the architecture's default".
    Activation,
    /// `auto`, `cpu` or `cuda:N`.
    Device,
    /// An architecture of the model zoo (`nfbench model list`).
    Architecture,
}

/// Activation names `model.activation` accepts; leaving the field out keeps the architecture's own.
pub const ACTIVATIONS: &[&str] = &[
    "relu",
    "gelu",
    "gelu_erf",
    "silu",
    "elu",
    "leaky_relu",
    "relu6",
    "tanh",
    "sigmoid",
    "softplus",
    "identity",
];

/// A preset field as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldInfo {
    /// Dotted key, e.g. `agc.lambda`.
    pub name: &'static str,
    /// TOML type in words: float, integer, bool, string, path, list of strings.
    pub ty: &'static str,
    /// The default as a TOML literal.
    pub default: &'static str,
    /// The accepted range in words.
    pub range: &'static str,
    /// The manual: what the field does, its unit and its range (the only copy).
    pub doc: &'static str,
    /// What validation enforces.
    pub check: Check,
}

/// Every field of [`Preset`], in schema order.
pub fn fields() -> &'static [FieldInfo] {
    FIELDS
}

/// The field with this dotted name.
pub fn field(name: &str) -> Option<&'static FieldInfo> {
    FIELDS.iter().find(|f| f.name == name)
}

/// The value at a dotted path inside a TOML value.
pub(crate) fn value_at<'a>(root: &'a toml::Value, dotted: &str) -> Option<&'a toml::Value> {
    dotted.split('.').try_fold(root, |v, key| v.get(key))
}

/// The preset as a TOML value tree (what validation, diff and `check` read).
pub(crate) fn to_value(preset: &Preset) -> toml::Value {
    // Preset is plain data of strings, numbers, bools and lists: serialising it cannot fail.
    toml::Value::try_from(preset).unwrap_or_else(|_| toml::Value::Table(Default::default()))
}

/// Every range violation of `preset`, as (field, message), in schema order.
pub fn violations(preset: &Preset) -> Vec<(&'static str, String)> {
    let root = to_value(preset);
    FIELDS
        .iter()
        .filter_map(|f| {
            let value = value_at(&root, f.name)?;
            check_value(f.check, value).err().map(|msg| (f.name, msg))
        })
        .collect()
}

/// Check one value against a rule; the error says what was found and what is allowed.
pub fn check_value(check: Check, value: &toml::Value) -> Result<(), String> {
    match check {
        Check::Any => Ok(()),
        Check::Float(lo, hi) => check_float(value_f64(value)?, lo, hi),
        Check::AtLeast(min) => match value.as_integer() {
            Some(n) if n >= 0 && n as u64 >= min => Ok(()),
            Some(n) => Err(format!("{n} is out of range: must be >= {min}")),
            None => Err(format!("expected an integer, found {}", value.type_str())),
        },
        Check::NonEmpty => match value.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(()),
            Some(_) => Err("must not be empty".into()),
            None => Err(format!("expected a string, found {}", value.type_str())),
        },
        Check::NonEmptyItems => match value.as_array() {
            Some(items)
                if items
                    .iter()
                    .all(|i| i.as_str().is_some_and(|s| !s.is_empty())) =>
            {
                Ok(())
            }
            _ => Err("every item must be a non-empty string".into()),
        },
        Check::Activation => match value.as_str() {
            Some("") => Ok(()),
            _ => check_value(Check::Choice(ACTIVATIONS), value),
        },
        Check::Choice(choices) => match value.as_str() {
            Some(s) if choices.contains(&s) => Ok(()),
            Some(s) => Err(format!(
                "`{s}` is not one of {}",
                choices
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => Err(format!("expected a string, found {}", value.type_str())),
        },
        Check::Alpha => {
            let a = value_f64(value)?;
            if crate::model::alpha::is_valid(a) {
                Ok(())
            } else {
                Err(format!(
                    "{a} is out of range: must be {}",
                    crate::model::alpha::RULE
                ))
            }
        }
        Check::Dropout => {
            let p = value_f64(value)?;
            if p.is_finite() && p < 0.0 {
                Ok(())
            } else {
                check_float(p, Some(Incl(0.0)), Some(Excl(1.0))).map_err(|_| {
                    format!(
                        "{p} is out of range: must be 0 <= p < 1 (leave it out for the architecture's default)"
                    )
                })
            }
        }
        Check::Architecture => match value.as_str() {
            Some(s) if crate::model::zoo::find(s).is_some() => Ok(()),
            Some(s) => Err(format!(
                "unknown architecture `{s}`; known: {}",
                crate::model::zoo::names().join(", ")
            )),
            None => Err(format!("expected a string, found {}", value.type_str())),
        },
        Check::Device => match value.as_str() {
            Some(s) => s
                .parse::<super::schema::DeviceSpec>()
                .map(|_| ())
                .map_err(|_| format!("`{s}` is not {}", super::schema::DEVICE_SPELLINGS)),
            None => Err(format!("expected a string, found {}", value.type_str())),
        },
    }
}

fn value_f64(value: &toml::Value) -> Result<f64, String> {
    match value {
        toml::Value::Float(x) => Ok(*x),
        toml::Value::Integer(n) => Ok(*n as f64),
        other => Err(format!("expected a number, found {}", other.type_str())),
    }
}

fn check_float(x: f64, lo: Option<Bound>, hi: Option<Bound>) -> Result<(), String> {
    if !x.is_finite() {
        return Err(format!("{x} is not a finite number"));
    }
    let lo_ok = match lo {
        None => true,
        Some(Incl(b)) => x >= b,
        Some(Excl(b)) => x > b,
    };
    let hi_ok = match hi {
        None => true,
        Some(Incl(b)) => x <= b,
        Some(Excl(b)) => x < b,
    };
    if lo_ok && hi_ok {
        return Ok(());
    }
    let mut rule = Vec::new();
    match lo {
        Some(Incl(b)) => rule.push(format!(">= {b}")),
        Some(Excl(b)) => rule.push(format!("> {b}")),
        None => {}
    }
    match hi {
        Some(Incl(b)) => rule.push(format!("<= {b}")),
        Some(Excl(b)) => rule.push(format!("< {b}")),
        None => {}
    }
    Err(format!(
        "{x} is out of range: must be {}",
        rule.join(" and ")
    ))
}

static FIELDS: &[FieldInfo] = &[
    FieldInfo {
        name: "extends",
        ty: "path",
        default: "(none)",
        range: "a preset file, relative to this one",
        doc: "Another preset file this one inherits from (a path relative to this file); fields set here override it.",
        check: Check::Any,
    },
    FieldInfo {
        name: "model.name",
        ty: "string",
        default: "\"nf_resnet_cifar\"",
        range: "an architecture of `nfbench model list`",
        doc: "Architecture name as listed by `nfbench model list` (e.g. `nf_resnet_cifar`, `nf_resnet50`, `nfnet_f0`, `bn_resnet50`, `plain_resnet50`).",
        check: Check::Architecture,
    },
    FieldInfo {
        name: "model.alpha",
        ty: "float",
        default: "0.2",
        range: crate::model::alpha::RULE,
        doc: "Residual scale alpha: each block adds alpha * skip_gain * f(x) to the stream. 0 < alpha <= 1; changing it live recomputes every downstream beta from the predicted variance. Live.",
        check: Check::Alpha,
    },
    FieldInfo {
        name: "model.skip_gain_init",
        ty: "float",
        default: "0.0",
        range: "finite",
        doc: "Initial value of each block's learnable SkipInit gain. 0 makes the network the identity at init; 1 shows the alpha^2 variance staircase.",
        check: Check::Float(None, None),
    },
    FieldInfo {
        name: "model.activation",
        ty: "string",
        default: "(the architecture's)",
        range: "one of the listed names",
        doc: "Nonlinearity, overriding the architecture's default (relu, gelu (the tanh form), gelu_erf (the exact form timm uses), silu, elu, leaky_relu, relu6, tanh, sigmoid, softplus, identity). Leave the field out to keep the default (older files' `\"\"` means the same).",
        check: Check::Activation,
    },
    FieldInfo {
        name: "model.stochastic_depth",
        ty: "float",
        default: "0.0",
        range: "0 <= r < 1",
        doc: "Maximum stochastic-depth drop rate r; block i of n drops its residual branch with probability r * i / n. 0 <= r < 1.",
        check: Check::Float(Some(Incl(0.0)), Some(Excl(1.0))),
    },
    FieldInfo {
        name: "model.dropout",
        ty: "float",
        default: "(the architecture's)",
        range: "0 <= p < 1",
        doc: "Dropout rate before the classifier. 0 <= p < 1. Leave the field out to keep the architecture's default (older files' `-1` means the same).",
        check: Check::Dropout,
    },
    // Weight import and fine-tuning (nfbench issue 17).
    FieldInfo {
        name: "model.padding",
        ty: "string",
        default: "\"same\"",
        range: "same | symmetric",
        doc: "Padding of every conv and the stem's max pool: `same` is TensorFlow's 'SAME' (the reference; strided layers on even inputs pad 0 before, 1 after), `symmetric` PyTorch's ((stride-1)+(k-1))/2 on every side (timm's non-dm NF models; `nfbench weights import` sets it).",
        check: Check::Choice(&["same", "symmetric"]),
    },
    FieldInfo {
        name: "model.shortcut",
        ty: "string",
        default: "(the architecture's)",
        range: "strided_conv | avg_pool_conv",
        doc: "Transition blocks' shortcut, overriding the architecture's: `strided_conv` (a strided 1x1 conv) or `avg_pool_conv` (2x2 average pool when strided, then a 1x1 conv; timm's nf_resnet50). Leave it out to keep the architecture's.",
        check: Check::Choice(&["strided_conv", "avg_pool_conv"]),
    },
    FieldInfo {
        name: "model.init_from",
        ty: "path",
        default: "(none)",
        range: "a weights file of `nfbench weights import`",
        doc: "Start from these weights (a safetensors file `nfbench weights import` wrote, or a run's checkpoint) instead of the seeded initialisation. Every tensor must match; a different class count replaces the classifier (fine-tuning). A relative path is taken from the working directory.",
        check: Check::NonEmpty,
    },
    FieldInfo {
        name: "model.freeze",
        ty: "list of strings",
        default: "[]",
        range: "globs over parameter names",
        doc: "Parameters never updated (no step, no weight decay, no AGC statistics), as globs over parameter names (`*` any characters, `?` one), e.g. [\"stem*\", \"s1*\"]. A pattern matching no parameter is an error.",
        check: Check::NonEmptyItems,
    },
    FieldInfo {
        name: "model.head_lr_multiplier",
        ty: "float",
        default: "1.0",
        range: ">= 0",
        doc: "Learning-rate multiplier of the classifier (`linear.w`, `linear.b`), e.g. 10 for a new head on imported features.",
        check: Check::Float(Some(Incl(0.0)), None),
    },
    FieldInfo {
        name: "data.path",
        ty: "path",
        default: "\"data/cifar10-subset.h5\"",
        range: "non-empty",
        doc: "The HDF5 data set (see `nfbench data import`), or a folder of JPEG files laid out as `train/<class>/*.jpg` and `val/<class>/*.jpg` (classes in sorted order), decoded on the loader's threads; a relative path is taken from the working directory.",
        check: Check::NonEmpty,
    },
    FieldInfo {
        name: "data.batch_size",
        ty: "integer",
        default: "64",
        range: ">= 1",
        doc: "Images per training step. >= 1.",
        check: Check::AtLeast(1),
    },
    FieldInfo {
        name: "data.resolution",
        ty: "integer",
        default: "0",
        range: ">= 0 (0 = the data set's)",
        doc: "Training resolution in pixels (square); 0 keeps the data set's own (a JPEG data set, whose images differ in size: the architecture's training resolution, e.g. 192 for nfnet_f0). JPEG data sets train on the Inception crop (DeepMind's sampler: area 8%-100%, aspect 3/4-4/3) resized bicubically to this size.",
        check: Check::Any,
    },
    FieldInfo {
        name: "data.eval_resolution",
        ty: "integer",
        default: "0",
        range: ">= 0 (0 = training resolution)",
        doc: "Evaluation resolution in pixels; 0 uses the training resolution for a decoded-pixel data set and the architecture's test resolution for a JPEG data set (nfnet_f0 trains at 192 and tests at 256; F1 224/320, F2 256/352, F3 320/416, F4 384/512, F5 416/544, F6 448/576).",
        check: Check::Any,
    },
    FieldInfo {
        name: "data.crop_padding",
        ty: "integer",
        default: "4",
        range: ">= 0",
        doc: "Zero padding, in pixels, for the random-crop augmentation; 0 disables random crops.",
        check: Check::Any,
    },
    FieldInfo {
        name: "data.hflip",
        ty: "bool",
        default: "true",
        range: "true or false",
        doc: "Randomly flip training images left-right.",
        check: Check::Any,
    },
    FieldInfo {
        name: "data.workers",
        ty: "integer",
        default: "2",
        range: ">= 1",
        doc: "Loader threads that read, augment and normalise batches. >= 1.",
        check: Check::AtLeast(1),
    },
    FieldInfo {
        name: "data.prefetch",
        ty: "integer",
        default: "4",
        range: ">= 1",
        doc: "Ready batches the loader keeps queued ahead of the trainer. >= 1.",
        check: Check::AtLeast(1),
    },
    FieldInfo {
        name: "data.eval_images",
        ty: "integer",
        default: "0",
        range: ">= 0 (0 = all)",
        doc: "Validation images used per evaluation; 0 evaluates the whole validation split.",
        check: Check::Any,
    },
    FieldInfo {
        name: "data.eval_crop",
        ty: "string",
        default: "\"resize_crop_32\"",
        range: "resize_crop_32, crop_pct or crop_pct_squash",
        doc: "How JPEG data sets crop evaluation images, at the evaluation resolution R: `resize_crop_32` is DeepMind's (resize the image to (R + 32) x (R + 32), centre-crop R x R), `crop_pct` is timm's default (shorter side to floor(R / `data.crop_pct`), centre-crop R), `crop_pct_squash` timm's 'squash' mode, which its dm_nfnet weights use (both sides to floor(R / `data.crop_pct`), centre-crop R); bicubic. Decoded-pixel data sets ignore it.",
        check: Check::Choice(&["resize_crop_32", "crop_pct", "crop_pct_squash"]),
    },
    FieldInfo {
        name: "data.crop_pct",
        ty: "float",
        default: "0.875",
        range: "0 < p <= 1",
        doc: "timm's evaluation crop fraction, used when `data.eval_crop` is `crop_pct` or `crop_pct_squash` (0.875 is timm's default, 0.9 its dm_nfnet weights'). 0 < p <= 1.",
        check: Check::Float(Some(Excl(0.0)), Some(Incl(1.0))),
    },
    FieldInfo {
        name: "data.decoder",
        ty: "string",
        default: "\"auto\"",
        range: "auto, turbo or zune",
        doc: "The JPEG decoder of JPEG data sets: `turbo` is libjpeg-turbo (decodes only the crop, DCT-scaled when the crop is at least twice the resolution; needs the `turbojpeg` cargo feature, on by default), `zune` is zune-jpeg (pure Rust, decodes whole images), `auto` the first this build has.",
        check: Check::Choice(&["auto", "turbo", "zune"]),
    },
    FieldInfo {
        name: "optim.lr",
        ty: "float",
        default: "0.1",
        range: "finite, >= 0",
        doc: "Base learning rate at batch 256; the effective rate is lr * batch_size / 256 * lr_scale. Finite, >= 0. Live.",
        check: Check::Float(Some(Incl(0.0)), None),
    },
    FieldInfo {
        name: "optim.lr_scale",
        ty: "float",
        default: "1.0",
        range: "finite, >= 0",
        doc: "Live multiplier on the scheduled learning rate (1 = as scheduled). Finite, >= 0. Live.",
        check: Check::Float(Some(Incl(0.0)), None),
    },
    FieldInfo {
        name: "optim.momentum",
        ty: "float",
        default: "0.9",
        range: "0 <= momentum < 1",
        doc: "Momentum coefficient. 0 <= momentum < 1. Live.",
        check: Check::Float(Some(Incl(0.0)), Some(Excl(1.0))),
    },
    FieldInfo {
        name: "optim.nesterov",
        ty: "bool",
        default: "true",
        range: "true or false",
        doc: "Use Nesterov momentum (the NFNet recipe).",
        check: Check::Any,
    },
    FieldInfo {
        name: "optim.weight_decay",
        ty: "float",
        default: "2e-5",
        range: "finite, >= 0",
        doc: "Coupled weight decay added to the gradient; gains, biases and skip gains are never decayed. >= 0. Live.",
        check: Check::Float(Some(Incl(0.0)), None),
    },
    FieldInfo {
        name: "optim.warmup_epochs",
        ty: "float",
        default: "5.0",
        range: "finite, >= 0",
        doc: "Linear warm-up length in epochs, from 0 to the peak rate. >= 0.",
        check: Check::Float(Some(Incl(0.0)), None),
    },
    FieldInfo {
        name: "optim.label_smoothing",
        ty: "float",
        default: "0.1",
        range: "0 <= s < 1",
        doc: "Label smoothing of the cross-entropy targets. 0 <= s < 1. Live.",
        check: Check::Float(Some(Incl(0.0)), Some(Excl(1.0))),
    },
    FieldInfo {
        name: "optim.ema_decay",
        ty: "float",
        default: "0.0",
        range: "0 <= d < 1",
        doc: "Decay of the exponential moving average of the weights used for evaluation; 0 disables EMA. 0 <= d < 1.",
        check: Check::Float(Some(Incl(0.0)), Some(Excl(1.0))),
    },
    FieldInfo {
        name: "agc.enabled",
        ty: "bool",
        default: "true",
        range: "true or false",
        doc: "Clip gradients adaptively. Live.",
        check: Check::Any,
    },
    FieldInfo {
        name: "agc.lambda",
        ty: "float",
        default: "0.01",
        range: "finite, > 0",
        doc: "Clipping threshold lambda: a unit's gradient norm is capped at lambda * max(||W_u||, eps). > 0. Live.",
        check: Check::Float(Some(Excl(0.0)), None),
    },
    FieldInfo {
        name: "agc.eps",
        ty: "float",
        default: "1e-3",
        range: "finite, > 0",
        doc: "Floor on the weight norm in the threshold. > 0.",
        check: Check::Float(Some(Excl(0.0)), None),
    },
    FieldInfo {
        name: "agc.exclude",
        ty: "list of strings",
        default: "[\"linear.w\"]",
        range: "parameter names or prefixes ending in `*`",
        doc: "Parameter names never clipped (exact names as in the AGC pane, or a prefix ending in `*`).",
        check: Check::NonEmptyItems,
    },
    FieldInfo {
        name: "run.steps",
        ty: "integer",
        default: "3000",
        range: ">= 1",
        doc: "Training steps in the run; the cosine schedule ends here. >= 1.",
        check: Check::AtLeast(1),
    },
    FieldInfo {
        name: "run.eval_every",
        ty: "integer",
        default: "500",
        range: ">= 0 (0 = only at the end)",
        doc: "Evaluate on the validation split every this many steps (and at the end); 0 only at the end.",
        check: Check::Any,
    },
    FieldInfo {
        name: "run.stats_every",
        ty: "integer",
        default: "50",
        range: ">= 1",
        doc: "Compute per-layer AGC and signal-propagation statistics every this many steps. >= 1. Live.",
        check: Check::AtLeast(1),
    },
    FieldInfo {
        name: "run.checkpoint_every",
        ty: "integer",
        default: "1000",
        range: ">= 0 (0 = only at the end)",
        doc: "Write a checkpoint every this many steps; 0 only at the end and on request.",
        check: Check::Any,
    },
    FieldInfo {
        name: "run.keep_checkpoints",
        ty: "integer",
        default: "3",
        range: ">= 1",
        doc: "Checkpoints kept besides the best one. >= 1.",
        check: Check::AtLeast(1),
    },
    FieldInfo {
        name: "run.seed",
        ty: "integer",
        default: "0",
        range: "any integer >= 0",
        doc: "Seed for initialisation, data order and augmentation.",
        check: Check::Any,
    },
    FieldInfo {
        name: "run.device",
        ty: "string",
        default: "\"auto\"",
        range: "auto, cpu or cuda:N",
        doc: "Where to train: `auto` (a GPU when there is one), `cpu`, or `cuda:N`.",
        check: Check::Device,
    },
    FieldInfo {
        name: "run.dtype",
        ty: "string",
        default: "\"f32\"",
        range: "f32 or bf16",
        doc: "Activation precision: `f32`, or `bf16` (GPU only; master weights and AGC stay f32).",
        check: Check::Choice(&["f32", "bf16"]),
    },
    FieldInfo {
        name: "run.max_bad_steps",
        ty: "integer",
        default: "5",
        range: ">= 1",
        doc: "Consecutive non-finite steps after which the trainer pauses itself. >= 1.",
        check: Check::AtLeast(1),
    },
    FieldInfo {
        name: "run.on_hangup",
        ty: "string",
        default: "\"detach\"",
        range: "detach or stop",
        doc: "What the workbench does when its terminal goes away (SIGHUP, a dropped SSH connection): \"detach\" \
              keeps training headless (reopen it with `nfbench attach`), \"stop\" writes a final checkpoint and \
              exits 0.",
        check: Check::Choice(&["detach", "stop"]),
    },
    FieldInfo {
        name: "rescue.enabled",
        ty: "bool",
        default: "false",
        range: "true or false",
        doc: "Divergence rescue: on `rescue.bad_steps` consecutive non-finite steps, or a loss above `rescue.spike_factor` x the running median, roll back to the last good checkpoint, apply `rescue.remedy`, skip the batches since that checkpoint and go on (an event says what was done). Needs a run directory (checkpoints); without a checkpoint yet the run pauses as diverged. Off: non-finite steps pause the run after `run.max_bad_steps`.",
        check: Check::Any,
    },
    FieldInfo {
        name: "rescue.bad_steps",
        ty: "integer",
        default: "3",
        range: ">= 1",
        doc: "N: consecutive non-finite steps that trigger a rescue; capped at `run.max_bad_steps`, so the rescue acts before the pause. >= 1.",
        check: Check::AtLeast(1),
    },
    FieldInfo {
        name: "rescue.spike_factor",
        ty: "float",
        default: "4.0",
        range: "finite, > 1",
        doc: "K: a finite loss above K x the median of the last `rescue.spike_window` finite losses triggers a rescue. > 1.",
        check: Check::Float(Some(Excl(1.0)), None),
    },
    FieldInfo {
        name: "rescue.spike_window",
        ty: "integer",
        default: "50",
        range: ">= 0 (0 = no spike detection)",
        doc: "W: finite losses in the running median the spike test compares with; the test is armed once W losses are in. 0 turns spike detection off (non-finite steps still trigger).",
        check: Check::Any,
    },
    FieldInfo {
        name: "rescue.max_rescues",
        ty: "integer",
        default: "3",
        range: ">= 1",
        doc: "M: rescues allowed in one run; the next trigger gives up and pauses the run as diverged (a headless run stops). >= 1.",
        check: Check::AtLeast(1),
    },
    FieldInfo {
        name: "rescue.remedy",
        ty: "string",
        default: "\"both\"",
        range: "halve_lambda, halve_lr_scale or both",
        doc: "What a rescue changes after the rollback, through the live-parameter path: `halve_lambda` (agc.lambda / 2), `halve_lr_scale` (optim.lr_scale / 2) or `both`. Each rescue halves the values in force again.",
        check: Check::Choice(super::rescue::Remedy::NAMES),
    },
    // [sweep]: nfbench sweep (issue 19).
    FieldInfo {
        name: "sweep.grid",
        ty: "list of tables",
        default: "[]",
        range: "each { key = \"a.b\", values = [v1, v2, ...] } with a preset key and values it accepts",
        doc: "The grid `nfbench sweep` runs: one axis per entry, e.g. `grid = [{ key = \"agc.lambda\", values = [0.01, 0.02] }, { key = \"data.batch_size\", values = [64, 256] }]`; every combination is one run (the first axis varies slowest). `--grid KEY=V1,V2` replaces it. Ignored by a single run.",
        check: Check::Any,
    },
    FieldInfo {
        name: "sweep.jobs",
        ty: "integer",
        default: "1",
        range: ">= 1",
        doc: "Runs a sweep trains at the same time; the CPU cores are split between them (each gets RAYON_NUM_THREADS = cores / jobs and at most as many loader workers). `--jobs` overrides it. >= 1.",
        check: Check::AtLeast(1),
    },
    FieldInfo {
        name: "sweep.scale_lr",
        ty: "string",
        default: "\"linear\"",
        range: "linear, sqrt or none",
        doc: "How a sweep's runs scale the learning rate with `data.batch_size`: `linear` keeps the preset's rule (peak = optim.lr x batch / 256), `sqrt` grows the peak of the preset's batch size by sqrt(batch / preset batch), `none` keeps that peak at every batch size (through `optim.lr_scale`). `--scale-lr` overrides it.",
        check: Check::Choice(super::schema::ScaleLr::NAMES),
    },
    // --- The NFNet training recipe (issue 18): [augment], optim.loss / accumulate / EMA schedule, run.eval_weights.
    FieldInfo {
        name: "augment.randaugment_layers",
        ty: "integer",
        default: "0",
        range: ">= 0",
        doc: "RandAugment N: ops applied in sequence to each training image (DeepMind's `randaugment_405` is 4 layers at magnitude 5); 0 disables RandAugment. >= 0.",
        check: Check::AtLeast(0),
    },
    FieldInfo {
        name: "augment.randaugment_magnitude",
        ty: "integer",
        default: "0",
        range: ">= 0 (10 is the table's maximum level; above it ops extrapolate)",
        doc: "RandAugment M: the level every op is applied at, on DeepMind's scale where 10 is the maximum (F0 5, F1-F2 10, F3+ 15). >= 0.",
        check: Check::AtLeast(0),
    },
    FieldInfo {
        name: "augment.translate_const",
        ty: "integer",
        default: "100",
        range: ">= 0 pixels",
        doc: "RandAugment's TranslateX/Y shift at level 10, in pixels (DeepMind: 100 at 224 px; scale it with the resolution on small images). >= 0.",
        check: Check::AtLeast(0),
    },
    FieldInfo {
        name: "augment.cutout_const",
        ty: "integer",
        default: "40",
        range: ">= 0 pixels",
        doc: "RandAugment's Cutout half-side at level 10, in pixels (DeepMind: 40 at 224 px). >= 0.",
        check: Check::AtLeast(0),
    },
    FieldInfo {
        name: "augment.mixing",
        ty: "string",
        default: "\"none\"",
        range: "none, mixup, cutmix or mixup_cutmix",
        doc: "Batch mixing of training images: `mixup`, `cutmix`, or `mixup_cutmix` (DeepMind's NFNet recipe: the first half of each batch MixUp, the second CutMix); each output image mixes two source images, so a mixed batch reads twice the images. `none` disables it.",
        check: Check::Choice(&["none", "mixup", "cutmix", "mixup_cutmix"]),
    },
    FieldInfo {
        name: "augment.mixup_alpha",
        ty: "float",
        default: "0.2",
        range: "finite, > 0",
        doc: "MixUp ratio distribution Beta(alpha, alpha), drawn per image. > 0.",
        check: Check::Float(Some(Excl(0.0)), None),
    },
    FieldInfo {
        name: "augment.augment_before_mix",
        ty: "bool",
        default: "false",
        range: "true or false",
        doc: "Apply RandAugment to the source images before mixing (true) or to the mixed images (false, DeepMind's NFNet setting).",
        check: Check::Any,
    },
    FieldInfo {
        name: "optim.ema_warmup",
        ty: "string",
        default: "\"constant\"",
        range: "constant or tf1",
        doc: "EMA decay schedule: `constant` uses optim.ema_decay from the start; `tf1` uses min(decay, (1 + t) / (10 + t)) at step t (DeepMind's default `tf1_ema`).",
        check: Check::Choice(&["constant", "tf1"]),
    },
    FieldInfo {
        name: "optim.ema_start",
        ty: "integer",
        default: "0",
        range: ">= 0 steps",
        doc: "Step from which the EMA averages; before it the average equals the weights (and the tf1 warm-up counts from here). >= 0.",
        check: Check::AtLeast(0),
    },
    FieldInfo {
        name: "optim.loss",
        ty: "string",
        default: "\"softmax_cross_entropy\"",
        range: "softmax_cross_entropy or sigmoid_cross_entropy",
        doc: "Training loss over the (mixed, smoothed) soft targets, DeepMind's `which_loss`: softmax cross-entropy, or per-class sigmoid cross-entropy summed over classes.",
        check: Check::Choice(&["softmax_cross_entropy", "sigmoid_cross_entropy"]),
    },
    FieldInfo {
        name: "optim.accumulate",
        ty: "integer",
        default: "1",
        range: ">= 1, dividing data.batch_size",
        doc: "Gradient accumulation: each step runs K micro-batches of data.batch_size / K and applies one AGC + SGD update to their summed gradient, the same update as one batch of data.batch_size. >= 1.",
        check: Check::AtLeast(1),
    },
    FieldInfo {
        name: "run.eval_weights",
        ty: "string",
        default: "\"ema\"",
        range: "ema, raw or both",
        doc: "Which weights evaluations measure when EMA is on: `ema` (as the paper reports), `raw`, or `both` (one eval row each; the `ema` column says which). Without EMA the raw weights are measured.",
        check: Check::Choice(&["ema", "raw", "both"]),
    },
];
