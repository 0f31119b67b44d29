//! `cas serve --watch DIR`: a .torrent dropped into DIR is added and fetched, as in
//! rtorrent's or Transmission's watch directory.
//!
//! The directory is looked at every [`POLL`]. A file is taken once its size has stayed
//! the same for one look (a copy still being written is left alone). An added file is
//! renamed `NAME.torrent.added`; one that is not a usable torrent `NAME.torrent.invalid`,
//! with the reason in the log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Engine, Source};
use crate::meta::parse::Metainfo;

/// How often the directory is looked at.
pub const POLL: Duration = Duration::from_secs(1);

fn rename(path: &Path, suffix: &str) {
    let mut to = path.as_os_str().to_owned();
    to.push(suffix);
    if let Err(e) = std::fs::rename(path, &to) {
        tracing::warn!("{}: cannot rename: {e}", path.display());
    }
}

/// The .torrent files in `dir` with their sizes.
fn listing(dir: &Path) -> std::io::Result<HashMap<PathBuf, u64>> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        let is_torrent = path.extension().is_some_and(|x| x == "torrent");
        if is_torrent && e.file_type()?.is_file() {
            out.insert(path, e.metadata()?.len());
        }
    }
    Ok(out)
}

async fn add_one(engine: &Engine, path: &Path) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return tracing::warn!("{}: {e}", path.display()),
    };
    if let Err(e) = Metainfo::parse(&bytes) {
        tracing::warn!("{}: not a usable torrent: {e}", path.display());
        return rename(path, ".invalid");
    }
    match engine.add(Source::Torrent(bytes), &[]).await {
        Ok((ih, _)) => {
            tracing::info!("{}: added torrent {ih}", path.display());
            rename(path, ".added");
        }
        Err(e) => {
            tracing::warn!("{}: {e:#}", path.display());
            rename(path, ".invalid");
        }
    }
}

/// Watches `dir` until the engine goes away.
pub async fn watch(engine: Arc<Engine>, dir: PathBuf) {
    let mut seen: HashMap<PathBuf, u64> = HashMap::new();
    loop {
        let now = match listing(&dir) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("watching {}: {e}", dir.display());
                HashMap::new()
            }
        };
        for (path, len) in &now {
            if seen.get(path) == Some(len) {
                add_one(&engine, path).await;
            }
        }
        seen = now;
        tokio::time::sleep(POLL).await;
    }
}
