//! `cas mount`: the store as a read-only filesystem until interrupted.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use cas::mount::StoreTree;

use super::Cli;

pub fn mount(cli: &Cli, mountpoint: &Path) -> Result<i32> {
    if cli.daemon.is_some() {
        bail!("cas mount runs in a process of its own: stop `cas serve` first");
    }
    let store = Arc::new(cli.open_exclusive()?);
    if cas_fuse::is_stale_mount(mountpoint) {
        errln!(
            "{}: a mount left by a process that died; unmounting it first",
            mountpoint.display()
        );
        cas_fuse::detach(mountpoint)
            .with_context(|| format!("unmounting the stale mount at {}", mountpoint.display()))?;
    }
    let root = store.root().to_path_buf();
    let tree = Arc::new(StoreTree::new(store));
    let m = cas_fuse::mount(tree, mountpoint, &cas_fuse::MountOptions::default())
        .with_context(|| format!("mounting on {}", mountpoint.display()))?;
    outln!(
        "mounted {} on {} (read-only); Ctrl-C unmounts",
        root.display(),
        mountpoint.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    drop(m);
    // Files still open keep a mount busy: detach it, it goes when they are closed.
    // (If the unmount above worked, there is nothing left to detach.)
    let _ = cas_fuse::detach(mountpoint);
    errln!("unmounted {}", mountpoint.display());
    Ok(0)
}
