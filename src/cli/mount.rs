//! `cas mount`'s arguments: `cas serve --mount` by another name (the mount itself is
//! `cas::service`).

use std::path::PathBuf;

use clap::Args;

use super::serve::NetArgs;

#[derive(Args, Debug)]
pub struct MountArgs {
    /// A directory to mount on
    pub mountpoint: PathBuf,
    /// How long a read waits for a piece the store lacks before it fails with EIO
    /// [default: 60]
    #[arg(long, value_name = "SECONDS")]
    pub read_timeout: Option<u64>,
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
