//! What the web API keeps of its own in the store: categories, tags, and each
//! torrent's category, tags, share limits, whether it was paused or removed from
//! the list, when it was added. One small JSON file, `STORE/webapi.json`, written
//! whole and atomically (`write_atomic`) after every change; a change whose write
//! fails is not made. Format: docs/on-disk-format.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::chunks::write_atomic;
use crate::{Error, InfoHash, Result};

/// The file's format version.
pub const VERSION: u32 = 1;

/// A category: a name and the path its torrents would be saved under.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub save_path: String,
}

/// One torrent's labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TorrentLabels {
    /// Empty: none.
    pub category: String,
    pub tags: BTreeSet<String>,
    /// Unix seconds.
    pub added_on: i64,
    /// Paused through the API: paused again after a restart.
    pub paused: bool,
    /// Taken out of the list (`delete`); added again, it comes back.
    pub removed: bool,
    pub force_start: bool,
    /// qBittorrent's: -2 the global limit, -1 none.
    pub ratio_limit: f64,
    /// Minutes; -2 the global limit, -1 none.
    pub seeding_time_limit: i64,
    /// Where its data was adopted from, if it was.
    pub adopted_from: Option<String>,
}

impl Default for TorrentLabels {
    fn default() -> Self {
        TorrentLabels {
            category: String::new(),
            tags: BTreeSet::new(),
            added_on: 0,
            paused: false,
            removed: false,
            force_start: false,
            ratio_limit: -2.0,
            seeding_time_limit: -2,
            adopted_from: None,
        }
    }
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    pub version: u32,
    pub categories: BTreeMap<String, Category>,
    pub tags: BTreeSet<String>,
    pub torrents: BTreeMap<InfoHash, TorrentLabels>,
}

impl Default for Labels {
    fn default() -> Self {
        Labels {
            version: VERSION,
            categories: BTreeMap::new(),
            tags: BTreeSet::new(),
            torrents: BTreeMap::new(),
        }
    }
}

impl Labels {
    /// A torrent's labels (the defaults if it has none).
    pub fn of(&self, ih: &InfoHash) -> TorrentLabels {
        self.torrents.get(ih).cloned().unwrap_or_default()
    }

    pub fn is_removed(&self, ih: &InfoHash) -> bool {
        self.torrents.get(ih).is_some_and(|t| t.removed)
    }
}

/// qBittorrent's rule for a category name: not empty, no `\`, no empty path
/// component (no leading, trailing or doubled `/`).
pub fn valid_category(name: &str) -> bool {
    !name.is_empty() && !name.contains('\\') && name.split('/').all(|c| !c.is_empty())
}

/// qBittorrent's rule for a tag: not empty once trimmed, no comma.
pub fn valid_tag(tag: &str) -> bool {
    !tag.trim().is_empty() && !tag.contains(',')
}

/// The labels file of a store, read once and written on every change.
pub struct LabelStore {
    path: PathBuf,
    labels: Mutex<Labels>,
}

impl LabelStore {
    pub fn open(store_root: &Path) -> Result<LabelStore> {
        let path = store_root.join("webapi.json");
        let labels = match std::fs::read(&path) {
            Ok(bytes) => {
                let l: Labels = serde_json::from_slice(&bytes).map_err(|e| Error::BadInput {
                    path: path.clone(),
                    reason: format!("not a web API labels file: {e}"),
                })?;
                if l.version != VERSION {
                    return Err(Error::BadInput {
                        path,
                        reason: format!("labels format {} is not {VERSION}", l.version),
                    });
                }
                l
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Labels::default(),
            Err(e) => return Err(Error::io(&path, "read")(e)),
        };
        Ok(LabelStore {
            path,
            labels: Mutex::new(labels),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Labels> {
        self.labels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The labels now.
    pub fn get(&self) -> Labels {
        self.lock().clone()
    }

    /// Changes the labels with `f` and writes them; when `f` fails or the write
    /// does, nothing changes.
    pub fn update<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&mut Labels) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut held = self.lock();
        let mut next = held.clone();
        let out = f(&mut next)?;
        if next != *held {
            let bytes = serde_json::to_vec_pretty(&next)
                .map_err(|e| Error::Invalid(format!("labels: {e}")))?;
            write_atomic(&self.path, &bytes)?;
            *held = next;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_survive_reopening_and_a_failed_change_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ih: InfoHash = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        let s = LabelStore::open(dir.path()).unwrap();
        s.update(|l| {
            l.categories.insert("tv".into(), Category::default());
            l.torrents.entry(ih).or_default().tags.insert("x".into());
            Ok::<_, Error>(())
        })
        .unwrap();
        let r: std::result::Result<(), Error> = s.update(|l| {
            l.tags.insert("never".into());
            Err(Error::Invalid("no".into()))
        });
        assert!(r.is_err());
        let again = LabelStore::open(dir.path()).unwrap().get();
        assert_eq!(again, s.get());
        assert!(again.categories.contains_key("tv"));
        assert!(again.tags.is_empty());
        assert!(again.of(&ih).tags.contains("x"));
    }

    #[test]
    fn category_and_tag_names() {
        assert!(valid_category("tv/hd"));
        for bad in ["", "/tv", "tv/", "a//b", "a\\b"] {
            assert!(!valid_category(bad), "{bad}");
        }
        assert!(valid_tag("x y"));
        assert!(!valid_tag(" "));
        assert!(!valid_tag("a,b"));
    }
}
