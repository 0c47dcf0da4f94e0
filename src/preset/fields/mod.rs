//! Every preset field as data: name, type, default, range, live or restart-only, documentation, and the range
//! check that validation runs. `nfbench preset fields` prints this table; validation and [`super::diff`] walk it.
//!
//! The `doc` strings are the user's manual, and this table is its only copy: the schema structs carry no field docs
//! of their own. A test holds the table to exactly one entry per schema field.

mod check;
mod table;

pub use check::check_value;
use table::FIELDS;

use super::schema::Preset;

/// One end of a numeric range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Inclusive(f64),
    Exclusive(f64),
}

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
