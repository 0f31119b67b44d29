//! `cas rm`: what removing a name means. A ref goes; a tree goes with every ref that
//! names it; a torrent kept for its own sake (pinned, or still being fetched) stops
//! being kept. Nothing is deleted here: `cas gc` frees what nothing live reaches.

use crate::read::{resolve, Target};
use crate::store::Store;
use crate::{Error, InfoHash, Result, TreeId};

/// What a removal did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removed {
    /// A ref, by name.
    Ref(String),
    /// A tree, and the refs that named it.
    Tree { id: TreeId, refs: Vec<String> },
    /// A torrent kept for its own sake.
    Torrent(InfoHash),
}

/// Removes what `spec` names (a ref, a tree id or an info-hash).
pub fn remove(store: &Store, spec: &str) -> Result<Removed> {
    let catalog = store.catalog();
    match resolve(store, spec)? {
        Target::Tree {
            via_ref: Some(name),
            ..
        } => {
            catalog.remove_ref(&name)?;
            Ok(Removed::Ref(name))
        }
        Target::Tree { id, via_ref: None } => {
            let mut refs = Vec::new();
            for (name, tree) in catalog.refs()? {
                if tree == id {
                    catalog.remove_ref(&name)?;
                    refs.push(name);
                }
            }
            catalog.remove_tree(&id)?;
            Ok(Removed::Tree { id, refs })
        }
        Target::Torrent(ih) => {
            if !remove_torrent(store, &ih)? {
                return Err(Error::NotKept(ih));
            }
            Ok(Removed::Torrent(ih))
        }
        Target::File { .. } => Err(Error::Invalid(format!(
            "{spec}: cas rm takes a ref, a tree id or an info-hash"
        ))),
    }
}

/// Stops keeping torrent `ih` for its own sake: unpinned, and no longer fetched if
/// it was. False if it was neither (a ref may still keep it).
pub fn remove_torrent(store: &Store, ih: &InfoHash) -> Result<bool> {
    let catalog = store.catalog();
    let pinned = catalog.unpin(ih)?;
    let downloading = catalog.remove_download(ih)?;
    Ok(pinned || downloading)
}
