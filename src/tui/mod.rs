//! The workbench: a ratatui TUI over the background trainer, one file per pane.
