//! The control socket of `cas serve`: private while it runs, gone when it stops.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Stdio;

use crate::common::*;

#[test]
fn the_control_socket_is_0600_while_serving_and_removed_on_a_clean_stop() {
    let env = Env::with_piece_length("16K");
    write(&env.path("src/a"), b"served\n");
    env.import(&env.path("src"), "src");
    let sock = env.store().join("cas.sock");
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut child = env
            .cmd()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("seeding "), "{line}");
        let meta = std::fs::symlink_metadata(&sock).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // Commands run through it meanwhile.
        assert_eq!(env.ok(&["cat", "src:a"]), "served\n");

        // SAFETY: signalling our own child, which has not been waited for.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let status = child.wait().unwrap();
        assert!(status.success(), "cas serve stopped with {status}");
        assert!(
            !sock.exists(),
            "{} left behind after signal {signal}",
            sock.display()
        );
        // And the next command runs on its own.
        assert_eq!(env.ok(&["cat", "src:a"]), "served\n");
    }
}
