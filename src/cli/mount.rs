//! `cas mount` and `cas serve --mount`: the store as a read-only filesystem while the
//! engine seeds it and fetches, on demand, the pieces that reads need.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use cas::engine::lazy::OnDemand;
use cas::engine::Engine;
use cas::mount::StoreTree;

use super::serve::NetArgs;

#[derive(Args, Debug)]
pub struct MountArgs {
    /// A directory to mount on
    pub mountpoint: PathBuf,
    /// How long a read waits for a piece the store lacks before it fails with EIO
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub read_timeout: u64,
    /// Open files with direct I/O: faster large reads, no kernel page cache for them
    /// (and no shared mmap on kernels before 6.6)
    #[arg(long)]
    pub direct_io: bool,
    /// Connect to this peer for every torrent being fetched (repeatable)
    #[arg(long = "peer", value_name = "ADDR:PORT")]
    pub peers: Vec<std::net::SocketAddr>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// Mounts the store on `mountpoint`: a mount left there by a process that died is
/// detached first.
pub fn mount(
    engine: &Arc<Engine>,
    mountpoint: &Path,
    read_timeout: Duration,
    direct_io: bool,
) -> Result<cas_fuse::Mount> {
    if cas_fuse::is_stale_mount(mountpoint) {
        errln!(
            "{}: a mount left by a process that died (transport endpoint is not connected); \
             unmounting it first",
            mountpoint.display()
        );
        cas_fuse::detach(mountpoint)
            .with_context(|| format!("unmounting the stale mount at {}", mountpoint.display()))?;
    }
    let fetch = OnDemand::new(
        engine.clone(),
        tokio::runtime::Handle::current(),
        read_timeout,
    );
    let tree = Arc::new(StoreTree::new(
        engine.store().clone(),
        Some(Arc::new(fetch)),
    ));
    let options = cas_fuse::MountOptions {
        fs_name: format!("cas:{}", engine.store().root().display()),
        direct_io,
        ..Default::default()
    };
    Ok(cas_fuse::mount(tree, mountpoint, &options)?)
}

/// Unmounts; with files still open there the mount is detached and goes when they close.
pub fn unmount(m: cas_fuse::Mount) {
    let path = m.path().to_path_buf();
    // Joining the filesystem's threads blocks: keep the runtime's other workers going.
    tokio::task::block_in_place(|| drop(m));
    errln!("unmounted {}", path.display());
}
