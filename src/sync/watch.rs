//! Noticing that the directory changed, and waiting for it to settle.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::event::{EventKind, MetadataKind, ModifyKind};
use notify::Watcher;
use tokio::sync::mpsc::UnboundedReceiver;

use super::apply::WORK_DIR;

/// Whether an event may change what a scan finds: reads (and the access times they
/// set) do not, nor does anything in the sync's own working folder.
fn matters(ev: &notify::Event, work: &Path) -> bool {
    let changes = !matches!(
        ev.kind,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))
    );
    changes && !ev.paths.iter().all(|p| p.starts_with(work))
}

/// Watches `dir` recursively; a unit arrives for every change that matters. The
/// watcher stops when the first value returned is dropped.
pub fn watch(dir: &Path) -> anyhow::Result<(notify::RecommendedWatcher, UnboundedReceiver<()>)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let work = dir.join(WORK_DIR);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        match res {
            Ok(ev) if matters(&ev, &work) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            // An overflowed queue loses events: scan to be sure.
            Err(e) => {
                tracing::debug!("watcher: {e}");
                let _ = tx.send(());
            }
        }
    })
    .context("starting the directory watcher")?;
    watcher
        .watch(dir, notify::RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    Ok((watcher, rx))
}

/// Changes wait until the directory has been still for the quiet period, but never
/// longer than ten of them from the first change (a file written without pause is
/// published anyway).
pub struct Quiet {
    period: Duration,
    first: Option<Instant>,
    last: Instant,
}

impl Quiet {
    pub fn new(period: Duration) -> Quiet {
        Quiet {
            period,
            first: None,
            last: Instant::now(),
        }
    }

    pub fn touch(&mut self) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = now;
    }

    pub fn clear(&mut self) {
        self.first = None;
    }

    /// When the changes seen are due for a scan.
    pub fn due_at(&self) -> Option<Instant> {
        let first = self.first?;
        Some((self.last + self.period).min(first + self.period * 10))
    }

    pub fn due(&self) -> bool {
        self.due_at().is_some_and(|t| Instant::now() >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_wait_for_quiet_but_not_forever() {
        let p = Duration::from_secs(1);
        let mut q = Quiet::new(p);
        assert_eq!(q.due_at(), None);
        q.touch();
        let first = q.first.unwrap();
        assert_eq!(q.due_at(), Some(first + p));
        assert!(!q.due());
        // Still changing 9.5 periods later: due at ten periods from the first change.
        q.last = first + p * 19 / 2;
        assert_eq!(q.due_at(), Some(first + p * 10));
        q.clear();
        assert_eq!(q.due_at(), None);
    }
}
