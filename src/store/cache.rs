//! A small cache of verified chunks, shared by the readers of a torrent's pieces (the
//! engine serving peers, the mount serving reads): a chunk is read and verified
//! once however many requests of it arrive together, and two readers that want the
//! same chunk at once load it once (the second waits for the first).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use crate::chunks::chunk::VerifiedChunk;
use crate::store::Store;
use crate::{ChunkId, Result};

/// Verified chunks, the most recent `capacity` of them, and the ones being loaded.
pub struct ChunkCache {
    capacity: usize,
    state: Mutex<(VecDeque<Arc<VerifiedChunk>>, HashSet<ChunkId>)>,
    loaded: Condvar,
}

impl ChunkCache {
    pub fn new(capacity: usize) -> Self {
        ChunkCache {
            capacity: capacity.max(1),
            state: Mutex::new((VecDeque::new(), HashSet::new())),
            loaded: Condvar::new(),
        }
    }

    /// The chunk `id` if it is cached.
    pub fn cached(&self, id: &ChunkId) -> Option<Arc<VerifiedChunk>> {
        let g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.0.iter().find(|c| c.id() == *id).cloned()
    }

    /// Keeps `chunk` (just received, say), dropping the oldest if full.
    pub fn insert(&self, chunk: Arc<VerifiedChunk>) -> Arc<VerifiedChunk> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !g.0.iter().any(|c| c.id() == chunk.id()) {
            self.push(&mut g.0, chunk.clone());
        }
        chunk
    }

    fn push(&self, chunks: &mut VecDeque<Arc<VerifiedChunk>>, chunk: Arc<VerifiedChunk>) {
        if chunks.len() >= self.capacity {
            chunks.pop_front();
        }
        chunks.push_back(chunk);
    }

    /// Loads `id` unless it is cached or being loaded; returns it if loaded here.
    fn load(&self, store: &Store, id: &ChunkId) -> Result<Option<Arc<VerifiedChunk>>> {
        {
            let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if g.0.iter().any(|c| c.id() == *id) || !g.1.insert(*id) {
                return Ok(None);
            }
        }
        let got = store.get(id).map(Arc::new);
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.1.remove(id);
        let r = got.map(|c| {
            self.push(&mut g.0, c.clone());
            Some(c)
        });
        self.loaded.notify_all();
        r
    }

    /// The chunk `id`: from the cache, from a load under way, or read and verified here.
    pub fn get(&self, store: &Store, id: &ChunkId) -> Result<Arc<VerifiedChunk>> {
        loop {
            if let Some(c) = self.load(store, id)? {
                return Ok(c);
            }
            let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(c) = g.0.iter().find(|c| c.id() == *id) {
                    return Ok(c.clone());
                }
                if !g.1.contains(id) {
                    break; // its load failed or it left the cache: load it here
                }
                g = self.loaded.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}
