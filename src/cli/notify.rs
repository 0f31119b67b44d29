//! systemd's readiness protocol (sd_notify): a datagram of `KEY=VALUE` lines to the
//! socket `$NOTIFY_SOCKET` names (a path, or `@name` in the abstract namespace).
//! Without that variable nothing is sent. About twenty lines, so no crate.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `STOPPING=1`, ...) to systemd, if it listens.
pub fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_to(&path, state) {
        tracing::warn!("telling systemd {state:?}: {e}");
    }
}

fn send_to(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            sock.send_to(state.as_bytes(), path)?;
        }
    }
    Ok(())
}

/// `RELOADING=1` with the monotonic time systemd asks to go with it.
pub fn reloading() {
    // SAFETY: `ts` is valid for clock_gettime to fill.
    let usec = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
    };
    send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}
