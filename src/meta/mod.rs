//! Metainfo: bencode, .torrent building, magnet links.

pub mod bencode;
pub mod parse;
pub mod torrent;

/// Checks that a piece length is one for the torrents cas makes and BitTorrent clients
/// accept: a power of two from 16 KiB to [`parse::MAX_PIECE_LENGTH`] (64 MiB).
pub fn check_piece_length(len: u64) -> crate::Result<u32> {
    if len.is_power_of_two() && (16 << 10..=parse::MAX_PIECE_LENGTH).contains(&len) {
        Ok(len as u32)
    } else {
        Err(crate::Error::PieceLength(len))
    }
}
