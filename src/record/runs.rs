//! runs (in progress).
