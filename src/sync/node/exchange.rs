//! The update exchange: answering queries, taking and passing on updates, asking
//! peers for newer ones.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Node, POLL};
use crate::channel::SignedUpdate;
use crate::sync::wire::{Message, MAX_DATAGRAM};

/// How often the peer list is looked at for peers not asked yet.
const NEW_PEERS: Duration = Duration::from_millis(200);

impl Node {
    /// Takes `u` as the newest update if it ranks above the one held. Returns whether
    /// it did.
    pub(super) fn offer(&self, u: SignedUpdate, from: Option<SocketAddr>) -> anyhow::Result<bool> {
        let src = from.map_or("this node".to_string(), |a| a.to_string());
        if u.update.channel != self.channel.public {
            return Ok(false);
        }
        if let Err(e) = u.verify() {
            tracing::warn!(
                "refused update {} from {src} for channel {}: {e}",
                u.update.seq,
                self.opts.channel
            );
            return Ok(false);
        }
        let held = self.held_rank();
        if u.rank() <= held {
            if u.rank().0 < held.0 {
                tracing::warn!(
                    "refused update {} from {src} for channel {}: update {} is newer",
                    u.update.seq,
                    self.opts.channel,
                    held.0
                );
            }
            return Ok(false);
        }
        let bytes = u.encode();
        *self.newest.lock().unwrap_or_else(|e| e.into_inner()) = Some(u.clone());
        self.save(|s| s.newest = Some(bytes))?;
        self.wake.notify_one();
        Ok(true)
    }

    pub(super) async fn send(&self, msg: &Message, to: &[SocketAddr]) {
        let bytes = msg.encode();
        for a in to {
            if let Err(e) = self.socket.send_to(&bytes, a).await {
                tracing::debug!("sending to {a}: {e}");
            }
        }
    }

    /// Answers queries, takes updates and passes newer ones on.
    pub(super) async fn receive(self: Arc<Self>) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("update socket: {e}");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let allowed = self.opts.allow.is_empty()
                || self.opts.allow.iter().any(|net| net.contains(&from.ip()));
            let Some(msg) = Message::decode(&buf[..n]).filter(|_| allowed) else {
                continue;
            };
            match msg {
                Message::Query { channel, seq, tree } if channel == self.channel.public => {
                    self.heard
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(from);
                    if let Some(u) = self.newest().filter(|u| u.rank() > (seq, tree)) {
                        self.send(&Message::Update(u.encode()), &[from]).await;
                    }
                }
                Message::Query { .. } => {}
                m @ Message::Have { .. } => self
                    .gossip
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .hear(from, m),
                Message::Update(bytes) => {
                    let u = match SignedUpdate::decode(&bytes) {
                        Ok(u) => u,
                        Err(e) => {
                            tracing::warn!("refused an update from {from}: {e}");
                            continue;
                        }
                    };
                    match self.offer(u.clone(), Some(from)) {
                        Ok(true) => {
                            let others: Vec<_> =
                                self.peers().into_iter().filter(|p| *p != from).collect();
                            self.send(&Message::Update(bytes), &others).await;
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!("keeping update {}: {e:#}", u.update.seq),
                    }
                }
            }
        }
    }

    /// Asks every peer, now and then, for anything newer, and a peer found since as
    /// soon as it is found: a node that joins hears of the newest update once it
    /// finds its first peer, not at the next round.
    pub(super) async fn poll(self: Arc<Self>) {
        let mut asked = BTreeSet::new();
        let mut round: Option<Instant> = None;
        loop {
            let peers = self.peers();
            let all = round.is_none_or(|r| r.elapsed() >= POLL);
            let to: Vec<SocketAddr> = if all {
                round = Some(Instant::now());
                peers
            } else {
                peers.into_iter().filter(|p| !asked.contains(p)).collect()
            };
            if !to.is_empty() {
                let (seq, tree) = self.held_rank();
                let q = Message::Query {
                    channel: self.channel.public,
                    seq,
                    tree,
                };
                self.send(&q, &to).await;
                asked.extend(to);
            }
            tokio::time::sleep(NEW_PEERS).await;
        }
    }
}
