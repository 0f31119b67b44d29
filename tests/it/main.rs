//! The integration tests of cas: one binary, one module per theme. They run the real
//! `cas` binary and real peers (python libtorrent), on real files.

mod common;

mod activate;
mod adopt;
mod announce;
mod bad_input;
mod channel;
mod clients;
mod collisions;
mod crash;
mod damage;
mod dedup;
mod encryption;
mod fsck;
mod gc;
mod get;
mod hostile;
mod import;
mod interop;
mod ipv6;
mod layers;
mod liar;
mod limits;
mod listener;
pub mod lsd;
mod mount;
mod netns;
mod private;
mod qbittorrent;
mod rtorrent;
mod serve;
mod service;
mod skips;
mod socket;
mod stop;
mod sync;
mod tracker;
mod webapi;
