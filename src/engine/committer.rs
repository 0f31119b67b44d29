//! Received pieces made durable a few times a second.

use std::sync::Arc;

use librqbit::Session;

use crate::Store;

/// How often pieces received are made durable.
const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Commits the store a few times a second while pieces arrive. A failed commit stops
/// every torrent: none may go on advertising pieces that may not be durable.
pub(super) async fn committer(store: Arc<Store>, session: std::sync::Weak<Session>) {
    loop {
        tokio::time::sleep(COMMIT_INTERVAL).await;
        let Some(session) = session.upgrade() else {
            return;
        };
        if !store.has_pending() {
            continue;
        }
        let s = store.clone();
        let r = tokio::task::spawn_blocking(move || s.commit()).await;
        let err = match r {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!("committing received pieces failed, stopping every torrent: {err}");
        let handles: Vec<_> = session.with_torrents(|ts| ts.map(|(_, h)| h.clone()).collect());
        for h in handles {
            let _ = session.pause(&h).await;
        }
        return;
    }
}
