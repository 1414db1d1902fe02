//! The sled adapter of [`Store`](super::Store). sled 0.34 is frozen upstream; it is kept
//! behind the trait and flushed before anything that must survive is acknowledged.
//! sled locks its directory: one process at a time (the running gateway, or the CLI when
//! the gateway is stopped).

use super::{Entries, Store, StoreError, Tree};
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    /// Writers share it; a snapshot holds it alone, so what it reads across trees is one
    /// point in time (sled's iterators are consistent per tree only).
    gate: Arc<RwLock<()>>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl SledStore {
    /// Opens (or creates) the database at `dir`.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(err)?;
        let mut trees = Vec::new();
        for t in Tree::ALL {
            trees.push(db.open_tree(t.name()).map_err(err)?);
        }
        Ok(SledStore {
            db,
            trees,
            gate: Arc::default(),
        })
    }

    fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tree(&self, tree: Tree) -> Result<&sled::Tree, StoreError> {
        let i = Tree::ALL.iter().position(|t| *t == tree).unwrap_or(usize::MAX);
        self.trees.get(i).ok_or_else(|| err("unknown tree"))
    }
}

impl Store for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(tree)?.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let _w = self.writing();
        self.tree(tree)?.insert(key, value).map_err(err)?;
        Ok(())
    }

    fn take(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let _w = self.writing();
        Ok(self.tree(tree)?.remove(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn compare_and_swap(
        &self,
        tree: Tree,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let _w = self.writing();
        let r = self.tree(tree)?.compare_and_swap(key, old, new).map_err(err)?;
        Ok(r.is_ok())
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Entries, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree(tree)?.scan_prefix(prefix) {
            let (k, v) = kv.map_err(err)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(err)?;
        Ok(())
    }

    fn snapshot(&self, trees: &[Tree]) -> Result<Vec<(Tree, Entries)>, StoreError> {
        let _alone = self.gate.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        trees.iter().map(|&t| Ok((t, self.scan_prefix(t, b"")?))).collect()
    }
}
