//! The order pieces are asked for, when many cas nodes fetch one torrent at once.
//!
//! librqbit asks for a torrent's pieces in order (first and last piece of each file,
//! then the rest from the start), so nodes that start together want the same pieces
//! at the same time and have little to give each other: the seeder uploads every
//! piece once per node. A librqbit file stream makes the pieces in the window after
//! its position the first asked for, from every peer that has them. A stream opened
//! at a random piece of each file, and never read, gives each node a starting place
//! of its own: nodes hold different pieces sooner and trade them. librqbit has no
//! rarest-first selection and no choking to go further: once a node's window is
//! done it asks in order again, from the seeder too (see benches/README.md).

use std::io::SeekFrom;

use tokio::io::AsyncSeekExt;

use super::Engine;
use crate::InfoHash;

/// Streams open at once over every torrent being fetched. Each holds one of
/// librqbit's blocking-work permits for as long as it is open, so the engine raises
/// their number by as many ([`super::Engine::start`]).
pub const STREAMS: usize = 64;
/// How far past its position a librqbit stream asks for pieces first.
const WINDOW: u64 = 32 << 20;

/// Streams held open (librqbit does not name their type).
pub struct Spread(#[allow(dead_code)] Vec<Box<dyn Send>>);

/// Opens a stream at a random piece of each file of torrent `ih` (longer than a
/// piece), with further ones every window's length after it when the file is longer
/// than a window. The order holds while they are kept, and ends when they are
/// dropped. At most `places` streams.
pub async fn spread(engine: &Engine, ih: &InfoHash, places: usize) -> anyhow::Result<Spread> {
    let none = || Ok(Spread(Vec::new()));
    let Some(handle) = engine.handle(ih) else {
        return none();
    };
    let Some(storage) = engine.factory.counters(ih) else {
        return none();
    };
    let meta = storage.meta();
    let piece = u64::from(meta.piece_length);
    let mut streams: Vec<Box<dyn Send>> = Vec::new();
    for (id, f) in meta.files.iter().enumerate() {
        if f.pad || f.length <= piece {
            continue;
        }
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed)?;
        let start = u64::from_le_bytes(seed) % f.length.div_ceil(piece) * piece;
        let mut at = start;
        while at < f.length && streams.len() < places {
            let mut s = handle.clone().stream(id).await?;
            s.seek(SeekFrom::Start(at)).await?;
            streams.push(Box::new(s));
            at += WINDOW;
        }
    }
    Ok(Spread(streams))
}
