//! The trainer: a background thread that owns the model, optimiser, device and data, and talks to the outside only
//! through the typed messages in [`messages`].

pub mod messages;
