//! Adding a torrent to the session: its held pieces written as librqbit's bitfield
//! first, so that nothing held is fetched or re-read; a magnet's trackers added.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use librqbit::storage::StorageFactoryExt;
use librqbit::{
    AddTorrent, AddTorrentOptions, AddTorrentResponse, ManagedTorrent, PeerConnectionOptions,
};

use super::{order, safe_magnet, storage, Engine, Fetch, Source};
use crate::meta::parse::Metainfo;
use crate::InfoHash;

impl Engine {
    /// Adds a torrent: seeded if the store holds it, else downloaded into the store.
    /// A .torrent is checked first (paths that would escape are refused).
    pub async fn add(
        &self,
        source: Source,
        peers: &[SocketAddr],
    ) -> anyhow::Result<(InfoHash, Arc<ManagedTorrent>)> {
        self.add_with(source, peers, Fetch::Whole).await
    }

    /// [`Engine::add`] for a fetch of some kind. A torrent added lazily before and now
    /// added whole is downloaded whole.
    pub async fn add_with(
        &self,
        source: Source,
        peers: &[SocketAddr],
        fetch: Fetch,
    ) -> anyhow::Result<(InfoHash, Arc<ManagedTorrent>)> {
        let lazy = fetch == Fetch::Lazy;
        // A private torrent (BEP 27) announces to its own tracker only.
        let mut private = false;
        // The torrent asked for, when its info-hash is known before librqbit answers.
        let mut asked = None;
        let add = match &source {
            Source::Torrent(bytes) => {
                let meta = Metainfo::parse(bytes)?;
                private = meta.private;
                asked = Some(meta.info_hash);
                let held = crate::store::content::held_pieces(&self.store, &meta)?;
                let bitv = self.resume.join(format!("{}.bitv", meta.info_hash));
                std::fs::create_dir_all(&self.resume)?;
                std::fs::write(&bitv, storage::bitfield(held.iter().map(Option::is_some)))
                    .with_context(|| format!("write {}", bitv.display()))?;
                self.factory.prepare(meta.info_hash, held);
                AddTorrent::from_bytes(bytes.clone())
            }
            Source::Magnet(m) => {
                // librqbit takes a magnet's trackers from the link only.
                let mut m = safe_magnet(m)?;
                for t in &self.trackers {
                    m.push_str("&tr=");
                    m.push_str(&crate::meta::torrent::percent_encode(t));
                }
                AddTorrent::from_url(m)
            }
        };
        let response = self
            .session
            .add_torrent(
                add,
                Some(AddTorrentOptions {
                    storage_factory: Some(self.factory.clone().boxed()),
                    preferred_id: Some(
                        self.next_id
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    ),
                    overwrite: true,
                    ratelimits: self.limits.limits().per_torrent(),
                    initial_peers: (!peers.is_empty() || !self.peers.is_empty())
                        .then(|| [peers, &self.peers].concat()),
                    trackers: (!self.trackers.is_empty() && !private)
                        .then(|| self.trackers.clone()),
                    // A steered torrent asks for pieces once its steering is in
                    // place (`order::Steering`); meanwhile it resolves metadata,
                    // announces and seeds as any other.
                    only_files: (fetch != Fetch::Whole).then(Vec::new),
                    peer_opts: (fetch == Fetch::Steered).then_some(PeerConnectionOptions {
                        max_request_window: Some(order::REQUESTS),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            )
            .await
            .context("adding the torrent")?;
        let (handle, already) = match response {
            AddTorrentResponse::Added(_, h) => (h, false),
            AddTorrentResponse::AlreadyManaged(_, h) => (h, true),
            AddTorrentResponse::ListOnly(_) => anyhow::bail!("torrent was only listed"),
        };
        let ih = InfoHash(handle.info_hash().0);
        if let Some(asked) = asked.filter(|a| *a != ih) {
            anyhow::bail!("asked librqbit for torrent {asked}, and it answered with {ih}");
        }
        let catalog = self.store.catalog();
        if lazy && !catalog.has_torrent(&ih) {
            catalog.set_lazy(&ih, Some(&[peers, &self.peers].concat()))?;
        } else if !lazy && catalog.is_lazy(&ih) {
            self.select_all(&handle).await?;
            catalog.set_lazy(&ih, None)?;
        } else if fetch == Fetch::Whole && already {
            // A steered fetch that stopped may have left it with nothing selected.
            self.select_all(&handle).await?;
        }
        self.added
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ih);
        Ok((ih, handle))
    }
}
