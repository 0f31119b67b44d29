//! Commands run through a running `cas serve`.
//!
//! `cas serve` holds the store, so other `cas` processes cannot open it. It listens
//! on `STORE/cas.sock` (mode 0600); a command finding that socket alive sends its
//! arguments and working directory there, and the daemon runs the same code on its
//! own store and engine, sending standard output, standard error and the exit code
//! back. Torrents a command adds to the store (an import, a get) are seeded at once.
//!
//! Wire format, both ways: frames of one tag byte, a u32 little-endian length and
//! that many bytes. Client to daemon: one frame tagged `R` holding a JSON
//! [`Request`]. Daemon to client: `O` (stdout bytes), `E` (stderr bytes), then `X`
//! (exit code, i32 little-endian) last.

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};

use cas::engine::Engine;
use cas::Store;

use super::Cli;

/// What a command running inside the daemon uses instead of opening the store.
pub struct Daemon {
    pub store: Arc<Store>,
    pub engine: Arc<Engine>,
    pub rt: tokio::runtime::Handle,
    /// The channels `cas sync` keeps, when this daemon is one.
    pub syncs: Vec<Arc<cas::sync::node::Node>>,
    /// Every value in force and where it came from (`cas config show`).
    pub settings: Mutex<Vec<cas::config::Setting>>,
    /// The config file the daemon read, if any.
    pub config_file: Option<PathBuf>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Daemon({})", self.store.root().display())
    }
}

#[derive(Serialize, Deserialize)]
struct Request {
    args: Vec<Vec<u8>>,
    cwd: Vec<u8>,
    stdout_tty: bool,
    stderr_tty: bool,
}

/// Largest request accepted: arguments are small.
const MAX_REQUEST: u32 = 1 << 20;

fn write_frame(w: &mut impl Write, tag: u8, bytes: &[u8]) -> std::io::Result<()> {
    let mut head = [0u8; 5];
    head[0] = tag;
    head[1..].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
    w.write_all(&head)?;
    w.write_all(bytes)
}

fn read_frame(r: &mut impl Read, max: u32) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    if len > max {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes is too large"
        )));
    }
    let mut bytes = vec![0; len as usize];
    r.read_exact(&mut bytes)?;
    Ok((head[0], bytes))
}

pub fn socket_path(store: &Path) -> PathBuf {
    store.join("cas.sock")
}

// ---- output of commands: the terminal, or a client's socket ----

struct Remote {
    conn: Arc<Mutex<UnixStream>>,
    stdout_tty: bool,
}

thread_local! {
    static REMOTE: RefCell<Option<Remote>> = const { RefCell::new(None) };
}

/// Standard output or error of the command being run.
pub struct Out(u8);

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let sent = REMOTE.with(|r| {
            r.borrow().as_ref().map(|remote| {
                let mut conn = remote.conn.lock().unwrap_or_else(|e| e.into_inner());
                write_frame(&mut *conn, self.0, buf)
            })
        });
        match sent {
            Some(r) => r.map(|()| buf.len()),
            None if self.0 == b'O' => std::io::stdout().write(buf),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.0 == b'O' {
            std::io::stdout().flush()
        } else {
            Ok(())
        }
    }
}

pub fn stdout() -> Out {
    Out(b'O')
}

pub fn stderr() -> Out {
    Out(b'E')
}

/// Whether the command's standard output is a terminal (the client's, remotely).
pub fn stdout_is_terminal() -> bool {
    use std::io::IsTerminal;
    REMOTE
        .with(|r| r.borrow().as_ref().map(|r| r.stdout_tty))
        .unwrap_or_else(|| std::io::stdout().is_terminal())
}

/// Whether progress bars may be drawn: never for a remote command.
pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    !REMOTE.with(|r| r.borrow().is_some()) && std::io::stderr().is_terminal()
}

// ---- client ----

/// Runs the command through the daemon of `store` if one is listening; `None` if
/// there is none (the command then runs here).
pub fn forward(store: &Path) -> Result<Option<i32>> {
    use std::io::IsTerminal;
    let path = socket_path(store);
    let mut conn = match UnixStream::connect(&path) {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    let req = Request {
        args: std::env::args_os().map(|a| a.into_vec()).collect(),
        cwd: std::env::current_dir()
            .context("current directory")?
            .into_os_string()
            .into_vec(),
        stdout_tty: std::io::stdout().is_terminal(),
        stderr_tty: std::io::stderr().is_terminal(),
    };
    write_frame(&mut conn, b'R', &serde_json::to_vec(&req)?)
        .with_context(|| format!("sending the command to cas serve at {}", path.display()))?;
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    loop {
        let (tag, bytes) = read_frame(&mut conn, u32::MAX)
            .with_context(|| format!("cas serve at {} stopped answering", path.display()))?;
        match tag {
            b'O' => out.write_all(&bytes)?,
            b'E' => err.write_all(&bytes)?,
            b'X' => {
                out.flush()?;
                let code = bytes.try_into().map(i32::from_le_bytes).unwrap_or(1);
                return Ok(Some(code));
            }
            t => anyhow::bail!("cas serve sent an unknown frame {t:?}"),
        }
    }
}

// ---- daemon ----

/// The socket this process listens on, removed when it exits.
static SOCKET: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Run by `exit`, after `cas serve` returns or a command ends it: the socket goes
/// while the store lock (closed only after this) still says it is ours.
extern "C" fn remove_socket() {
    if let Some(path) = SOCKET.get() {
        let _ = std::fs::remove_file(path);
    }
}

/// Binds the control socket of `store`: in a directory only this user may enter, made
/// 0600 there and then renamed into place, so it is never reachable with other modes.
fn bind(store: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let path = socket_path(store);
    let staging = store.join(format!(".cas.sock.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("creating {}", staging.display()))?;
    let tmp = staging.join("cas.sock");
    let bound = UnixListener::bind(&tmp)
        .and_then(|l| {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&tmp, &path)?;
            Ok(l)
        })
        .with_context(|| format!("listening on {}", path.display()));
    let _ = std::fs::remove_dir_all(&staging);
    bound
}

/// Listens for commands until the process ends; the socket is removed when it exits.
pub fn listen(daemon: Arc<Daemon>) -> Result<()> {
    let path = socket_path(daemon.store.root());
    // The store lock is ours: a socket file left here is from a process that died.
    let _ = std::fs::remove_file(&path);
    let listener = bind(daemon.store.root())?;
    if SOCKET.set(path).is_ok() {
        // SAFETY: registers a function that takes no arguments and cannot unwind.
        unsafe { libc::atexit(remove_socket) };
    }
    std::thread::Builder::new()
        .name("cas-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let daemon = daemon.clone();
                let _ = std::thread::Builder::new()
                    .name("cas-command".into())
                    .spawn(move || {
                        if let Err(e) = serve_one(conn, &daemon) {
                            tracing::warn!("command from a client: {e:#}");
                        }
                    });
            }
        })?;
    Ok(())
}

fn serve_one(mut conn: UnixStream, daemon: &Arc<Daemon>) -> Result<()> {
    let (tag, bytes) = read_frame(&mut conn, MAX_REQUEST)?;
    anyhow::ensure!(tag == b'R', "expected a request frame");
    let req: Request = serde_json::from_slice(&bytes)?;
    let shared = Arc::new(Mutex::new(conn.try_clone()?));
    REMOTE.with(|r| {
        *r.borrow_mut() = Some(Remote {
            conn: shared.clone(),
            stdout_tty: req.stdout_tty,
        })
    });
    let code = run_remote(req, daemon);
    REMOTE.with(|r| *r.borrow_mut() = None);
    // Anything the command put in the store is seeded from now on.
    if let Err(e) = daemon.rt.block_on(daemon.engine.add_new()) {
        tracing::warn!("seeding new torrents: {e:#}");
    }
    let mut conn = shared.lock().unwrap_or_else(|e| e.into_inner());
    write_frame(&mut *conn, b'X', &code.to_le_bytes())?;
    Ok(())
}

fn run_remote(req: Request, daemon: &Arc<Daemon>) -> i32 {
    let args: Vec<OsString> = req.args.into_iter().map(OsString::from_vec).collect();
    let cwd = PathBuf::from(std::ffi::OsStr::from_bytes(&req.cwd));
    let mut cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = write!(stderr(), "{}", e.render());
            return e.exit_code();
        }
    };
    cli.absolutize(&cwd);
    cli.daemon = Some(daemon.clone());
    match super::dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(stderr(), "cas: error: {e:#}");
            1
        }
    }
}
