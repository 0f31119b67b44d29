//! librqbit on its own: the engine cas is built on, with librqbit's own file storage and
//! no store behind it. `benches/transfer.sh` runs a seeder and a leecher of this beside
//! cas -> cas, to show how much of cas's time is the engine's.
//!
//! ```text
//! rqbit_pair seed FILE.torrent DIR        seeds DIR/<name>; prints "seeding on PORT"
//! rqbit_pair get FILE.torrent DIR PEER    downloads into DIR from PEER, then exits
//! ```
//!
//! Both listen on 127.0.0.1 on a port the OS picks, with DHT, LSD, trackers and UPnP off,
//! and no persistence: the same session settings as cas's engine, less the store. Run
//! without arguments (as `cargo bench` and `cargo test --all-targets` do), it only says
//! how to use it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use librqbit::{
    AddTorrent, AddTorrentOptions, AddTorrentResponse, ListenerMode, ListenerOptions, Session,
    SessionOptions,
};

const USAGE: &str =
    "usage: rqbit_pair seed FILE.torrent DIR | rqbit_pair get FILE.torrent DIR PEER";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (seed, torrent, dir, peer) = match args.as_slice() {
        [mode, torrent, dir] if mode == "seed" => (true, torrent, dir, None),
        [mode, torrent, dir, peer] if mode == "get" => {
            let peer: SocketAddr = peer.parse().with_context(|| format!("peer {peer:?}"))?;
            (false, torrent, dir, Some(peer))
        }
        _ => {
            eprintln!("{USAGE}");
            return Ok(());
        }
    };
    let bytes = std::fs::read(torrent).with_context(|| format!("reading {torrent}"))?;
    let dir = PathBuf::from(dir);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(seed, bytes, dir, peer))
}

async fn run(
    seed: bool,
    torrent: Vec<u8>,
    dir: PathBuf,
    peer: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let session = Session::new_with_opts(
        dir.clone(),
        SessionOptions {
            dht: None,
            persistence: None,
            disable_local_service_discovery: true,
            listen: Some(ListenerOptions {
                mode: ListenerMode::TcpOnly,
                listen_addr: "127.0.0.1:0".parse()?,
                ipv4_only: true,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .context("starting the librqbit session")?;
    let added = session
        .add_torrent(
            AddTorrent::from_bytes(torrent),
            Some(AddTorrentOptions {
                overwrite: true,
                disable_trackers: true,
                initial_peers: peer.map(|p| vec![p]),
                output_folder: Some(dir.to_string_lossy().into_owned()),
                ..Default::default()
            }),
        )
        .await
        .context("adding the torrent")?;
    let handle = match added {
        AddTorrentResponse::Added(_, h) | AddTorrentResponse::AlreadyManaged(_, h) => h,
        AddTorrentResponse::ListOnly(_) => bail!("librqbit only listed the torrent"),
    };
    handle.wait_until_completed().await?;
    let stats = handle.stats();
    if seed {
        let port = session.listen_addr().context("no listen address")?.port();
        println!("seeding on {port}");
        tokio::signal::ctrl_c().await?;
    } else {
        println!(
            "{{\"bytes\": {}, \"seconds\": {:.3}}}",
            stats.progress_bytes,
            started.elapsed().as_secs_f64()
        );
    }
    session.stop().await;
    Ok(())
}
