//! The wire format between the training process and an attached workbench: frames of a 4-byte big-endian length
//! and a CBOR body (ciborium), the existing typed messages inside.
//!
//! CBOR rather than JSON lines: the events carry NaN on purpose (a gradient norm not computed this step, a loss
//! that went non-finite), which JSON cannot represent; CBOR keeps every f64 bit for bit, so an attached workbench
//! shows exactly what the local one would.

use crate::preset::Preset;
use crate::train::messages::{Command, Event};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;

/// The server's greeting, the first line on every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The training process.
    pub pid: u32,
    pub run_dir: PathBuf,
    /// The preset file the run was started from (hot reload watches it).
    pub preset_path: PathBuf,
    /// The preset in force when the run started; the history's `Applied` events bring it up to date.
    pub preset: Preset,
    /// Whether this client holds the controls.
    pub controls: bool,
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerMsg {
    Hello(Box<Hello>),
    /// A trainer event (the history first, then live).
    Event(Event),
    /// The history is complete; what follows is live.
    Live,
    /// This client now holds the controls (`true`) or no longer does.
    Controls(bool),
    /// A command from this client was not passed on: why.
    Refused(String),
}

/// Client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// For the trainer; passed on only from the client that holds the controls.
    Command(Command),
    /// Take the controls if nobody holds them.
    TakeControls,
    /// Give the controls up (the client stays as a viewer).
    ReleaseControls,
}

/// Frames larger than this are refused (a corrupt length would otherwise allocate gigabytes).
const MAX_FRAME: usize = 64 << 20;

/// Write one message as a frame.
pub fn write_frame<T: Serialize>(out: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let mut body = Vec::new();
    ciborium::into_writer(msg, &mut body).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(&body)?;
    out.flush()
}

/// Read the next message; `Ok(None)` when the stream ends between frames.
pub fn read_frame<T: DeserializeOwned>(input: &mut impl Read) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes (at most {MAX_FRAME})"),
        ));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    ciborium::from_reader(body.as_slice())
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}
