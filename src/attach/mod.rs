//! Attaching to a live run: a local Unix socket served by the training process, so that `nfbench attach` can
//! reopen the workbench on a run that is training detached or headless, from any terminal.
//!
//! - [`server::Server`] runs in the training process (the workbench, detached or not, and `nfbench train
//!   --headless`). It accepts connections on the run's socket (owner-only: mode 0600 and the peer's uid checked),
//!   greets each with a [`protocol::Hello`] (the preset in force, where the run lives, whether this client holds the
//!   controls), then sends the run's history and every live event (from the run's [`crate::record::Relay`]), and
//!   takes [`crate::train::messages::Command`]s from the one client that holds the controls.
//! - [`protocol`] is the wire format: one JSON object per line, the existing typed messages inside.
//! - Controls: one holder at a time. The workbench that started the run holds them while its terminal is there;
//!   when it detaches (or for a headless run), the first client to connect gets them; the others are read-only
//!   viewers until they ask and the controls are free.
//!
//! The client side (the workbench over a socket) is `cli/attach.rs`: it feeds the same `tui::run_loop`.

pub mod protocol;
pub mod server;

pub use protocol::{ClientMsg, Hello, ServerMsg};
pub use server::{Server, ServerOptions};

use std::path::{Path, PathBuf};

/// The socket's name in the run directory.
pub const SOCKET_NAME: &str = "attach.sock";

/// Errors of the attach server and client; each names the socket or run directory.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{}: {action}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Protocol { path: PathBuf, reason: String },
}

impl AttachError {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        AttachError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

/// Where the run's socket goes: in the run directory when the path fits a Unix socket address (108 bytes on
/// Linux, with room for the terminating NUL), else in a private per-user directory under the system's temporary
/// directory, named by the process id (`live.json` records which).
pub fn socket_path(run_dir: &Path) -> PathBuf {
    let inside = absolute(run_dir).join(SOCKET_NAME);
    if inside.as_os_str().len() < 100 {
        return inside;
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir()
        .join(format!("nfbench-{uid}"))
        .join(format!("{}.sock", std::process::id()))
}

/// `p` made absolute against the working directory (as given when that fails): the socket and the paths a
/// client is told must not depend on where the client runs.
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
