//! `cas serve`: seed every torrent in the store until interrupted.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;

use cas::engine::{Engine, EngineOptions};

use super::Cli;

pub fn run(cli: &Cli, listen: SocketAddr, lsd: bool, dht: bool) -> Result<i32> {
    let store = Arc::new(cli.open()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let engine = Engine::start(store, EngineOptions { listen, lsd, dht }).await?;
        println!("seeding {} torrents on {}", engine.torrents, engine.listen);
        std::io::stdout().flush()?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping");
        engine.session.stop().await;
        Ok(0)
    })
}
