//! The attach server: the training process's side of the run's socket.

use super::protocol::{read_frame, write_frame, ClientMsg, Hello, ServerMsg};
use super::{socket_path, AttachError};
use crate::preset::Preset;
use crate::record::Subscribers;
use crate::train::messages::Command;
use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};
use std::io::{BufReader, BufWriter, ErrorKind};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the accept loop looks at its stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

/// The controls' holder id of the workbench inside the training process.
const LOCAL: u64 = 0;

/// What the server tells each client about the run.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub run_dir: PathBuf,
    pub preset_path: PathBuf,
    pub preset: Preset,
}

/// Who holds the controls.
#[derive(Default)]
struct Controls {
    holder: Option<u64>,
    /// Each connected client's line for `ServerMsg::Controls` / `Refused`.
    clients: Vec<(u64, Sender<ServerMsg>)>,
}

impl Controls {
    fn tell(&mut self, id: u64, msg: ServerMsg) {
        if let Some((_, tx)) = self.clients.iter().find(|(c, _)| *c == id) {
            let _ = tx.send(msg);
        }
    }
}

type SharedControls = Arc<Mutex<Controls>>;

fn lock(c: &Mutex<Controls>) -> std::sync::MutexGuard<'_, Controls> {
    c.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves the run's socket until dropped.
pub struct Server {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    controls: SharedControls,
    thread: Option<JoinHandle<()>>,
}

/// What every connection needs.
#[derive(Clone)]
struct Shared {
    options: Arc<ServerOptions>,
    subscribers: Subscribers,
    commands: Sender<Command>,
    controls: SharedControls,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Bind the run's socket (replacing a stale one a killed process left) and start accepting. `local_controls`:
    /// the workbench in this process holds the controls from the start.
    pub fn start(
        options: ServerOptions,
        subscribers: Subscribers,
        commands: Sender<Command>,
        local_controls: bool,
    ) -> Result<Server, AttachError> {
        let socket = socket_path(&options.run_dir);
        let listener = bind(&socket)?;
        let stop = Arc::new(AtomicBool::new(false));
        let controls: SharedControls = Arc::default();
        if local_controls {
            lock(&controls).holder = Some(LOCAL);
        }
        let shared = Shared {
            options: Arc::new(options),
            subscribers,
            commands,
            controls: Arc::clone(&controls),
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name("nfbench-attach".into())
            .spawn(move || accept_loop(&listener, &shared))
            .map_err(|e| AttachError::io(&socket, "starting the attach thread", e))?;
        Ok(Server {
            socket,
            stop,
            controls,
            thread: Some(thread),
        })
    }

    /// The socket's path (for `live.json`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The workbench in this process lost its terminal: the controls go to the next client that asks or connects.
    pub fn release_local_controls(&self) {
        let mut c = lock(&self.controls);
        if c.holder == Some(LOCAL) {
            c.holder = None;
        }
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        lock(&self.controls).clients.len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Bind with owner-only permissions. A socket file that nobody answers on is a leftover of a killed process and
/// is replaced; one that answers belongs to a live process, and binding fails rather than stealing it.
fn bind(socket: &Path) -> Result<UnixListener, AttachError> {
    if let Some(dir) = socket.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
                .map_err(|e| AttachError::io(dir, "creating the socket directory", e))?;
        }
    }
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            return Err(AttachError::Protocol {
                path: socket.to_path_buf(),
                reason: "another live process serves this run's socket".into(),
            });
        }
        std::fs::remove_file(socket)
            .map_err(|e| AttachError::io(socket, "removing a stale socket", e))?;
    }
    let listener =
        UnixListener::bind(socket).map_err(|e| AttachError::io(socket, "binding the socket", e))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| AttachError::io(socket, "making the socket owner-only", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| AttachError::io(socket, "configuring the socket", e))?;
    Ok(listener)
}

fn accept_loop(listener: &UnixListener, shared: &Shared) {
    let next_id = AtomicU64::new(LOCAL + 1);
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if !same_user(&stream) {
                    // The socket is 0600, so only root gets here; still, controls are for the owner only.
                    continue;
                }
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                let _ = std::thread::Builder::new()
                    .name(format!("nfbench-attach-{id}"))
                    .spawn(move || serve_client(stream, id, &shared));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

/// Whether the peer runs as this process's user (SO_PEERCRED).
fn same_user(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket, a ucred-sized buffer and its length.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    // SAFETY: getuid has no preconditions.
    r == 0 && cred.uid == unsafe { libc::getuid() }
}

/// One client: greet, send the history and the live events; take its messages on a second thread.
fn serve_client(stream: UnixStream, id: u64, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let (tx, notices) = channel::unbounded();
    let controls = {
        let mut c = lock(&shared.controls);
        c.clients.push((id, tx));
        let free = c.holder.is_none();
        if free {
            c.holder = Some(id);
        }
        free
    };
    let reader = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("nfbench-attach-{id}-in"))
            .spawn(move || read_client(read_half, id, &shared))
    };
    let _ = send_to_client(stream, controls, &notices, shared);
    leave(id, &shared.controls);
    if let Ok(r) = reader {
        let _ = r.join();
    }
}

/// The writing half: hello, history, live events and notices, until the trainer is gone or the client is.
fn send_to_client(
    stream: UnixStream,
    controls: bool,
    notices: &Receiver<ServerMsg>,
    shared: &Shared,
) -> std::io::Result<()> {
    let shutdown_on_exit = stream.try_clone()?;
    let mut out = BufWriter::new(stream);
    let o = &shared.options;
    let hello = Hello {
        pid: std::process::id(),
        run_dir: o.run_dir.clone(),
        preset_path: o.preset_path.clone(),
        preset: o.preset.clone(),
        controls,
    };
    write_frame(&mut out, &ServerMsg::Hello(Box::new(hello)))?;
    let (history, live) = shared.subscribers.subscribe_with_history();
    for ev in history {
        write_frame(&mut out, &ServerMsg::Event(ev))?;
    }
    write_frame(&mut out, &ServerMsg::Live)?;
    let result = loop {
        loop {
            match notices.try_recv() {
                Ok(n) => write_frame(&mut out, &n)?,
                Err(channel::TryRecvError::Empty) => break,
                // The reading half saw the client leave.
                Err(channel::TryRecvError::Disconnected) => return Ok(()),
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        match live.recv_timeout(Duration::from_millis(200)) {
            Ok(ev) => write_frame(&mut out, &ServerMsg::Event(ev))?,
            Err(RecvTimeoutError::Timeout) => {}
            // The trainer is gone and everything it sent is out: end the stream, the client sees the end.
            Err(RecvTimeoutError::Disconnected) => break Ok(()),
        }
    };
    let _ = shutdown_on_exit.shutdown(std::net::Shutdown::Both);
    result
}

/// The reading half: commands from the holder of the controls, requests for the controls.
fn read_client(stream: UnixStream, id: u64, shared: &Shared) {
    let mut input = BufReader::new(stream);
    while let Ok(Some(msg)) = read_frame::<ClientMsg>(&mut input) {
        let mut c = lock(&shared.controls);
        match msg {
            ClientMsg::Command(cmd) if c.holder == Some(id) => {
                drop(c);
                let _ = shared.commands.send(cmd);
            }
            ClientMsg::Command(_) => c.tell(
                id,
                ServerMsg::Refused("read-only: another workbench holds the controls".into()),
            ),
            ClientMsg::TakeControls if c.holder.is_none() || c.holder == Some(id) => {
                c.holder = Some(id);
                c.tell(id, ServerMsg::Controls(true));
            }
            ClientMsg::TakeControls => c.tell(
                id,
                ServerMsg::Refused("the controls are held by another workbench".into()),
            ),
            ClientMsg::ReleaseControls => {
                if c.holder == Some(id) {
                    c.holder = None;
                    c.tell(id, ServerMsg::Controls(false));
                }
            }
        }
    }
    leave(id, &shared.controls);
}

/// The client is gone: its line closes and the controls it held are free.
fn leave(id: u64, controls: &Mutex<Controls>) {
    let mut c = lock(controls);
    c.clients.retain(|(cid, _)| *cid != id);
    if c.holder == Some(id) {
        c.holder = None;
    }
}
