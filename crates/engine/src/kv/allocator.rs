//! The block allocator behind the paged KV cache: a fixed number of blocks of `block_size`
//! token slots, reference-counted so sequences can share them, and a prefix cache that keeps
//! full blocks findable by content after their last owner is gone.
//!
//! Every block is in exactly one of three states:
//! - **used**: refcount > 0 (owned by one or more sequences);
//! - **free**: refcount 0, no content worth keeping (on the free stack);
//! - **cached**: refcount 0, a full block registered under its content hash (on the LRU
//!   list); it can be revived by a prefix hit or evicted when a block is needed.
//!
//! Invariants, checked by [`BlockAllocator::check`] (the tests run it after every operation):
//! 1. used + free + cached = total, and no block is listed twice;
//! 2. a block's refcount is 0 exactly when it is free or cached;
//! 3. a block is in the hash index exactly when it has a hash, and the index maps that hash
//!    back to it; cached blocks always have a hash;
//! 4. `available()` = free + cached (what `allocate` can hand out).
use std::collections::{BTreeMap, HashMap};

pub type BlockId = u32;

/// A full block's identity: the hash of its tokens chained with its parent block's hash, so
/// equal hashes mean equal prefixes, not just equal blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u64);

impl BlockHash {
    pub fn of(parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: the same on every run, so tests and logs are reproducible.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(0x636f_7274_6578, 0x7374_7265_616d);
        parent.map(|p| p.0).hash(&mut h);
        tokens.hash(&mut h);
        BlockHash(h.finish())
    }
}

#[derive(Clone, Debug)]
struct Meta {
    refs: u32,
    /// Set while the block is registered in the prefix cache.
    hash: Option<BlockHash>,
    /// The tokens (and parent) the hash stands for, compared on every hit so a 64-bit hash
    /// collision can never hand a sequence someone else's KV.
    key: Option<(Option<BlockHash>, Box<[u32]>)>,
    /// LRU position while cached.
    tick: u64,
}

pub struct BlockAllocator {
    block_size: usize,
    meta: Vec<Meta>,
    free: Vec<BlockId>,
    /// tick -> block, oldest first: cached blocks in eviction order.
    lru: BTreeMap<u64, BlockId>,
    index: HashMap<BlockHash, BlockId>,
    clock: u64,
    hits: u64,
    evictions: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockState {
    Used(u32),
    Free,
    Cached,
}

impl BlockAllocator {
    pub fn new(num_blocks: usize, block_size: usize) -> Self {
        assert!(block_size > 0, "block_size must be > 0");
        BlockAllocator {
            block_size,
            meta: vec![
                Meta {
                    refs: 0,
                    hash: None,
                    key: None,
                    tick: 0,
                };
                num_blocks
            ],
            // popped from the end: block 0 first
            free: (0..num_blocks as BlockId).rev().collect(),
            lru: BTreeMap::new(),
            index: HashMap::new(),
            clock: 0,
            hits: 0,
            evictions: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn total(&self) -> usize {
        self.meta.len()
    }

    /// Blocks `allocate` can hand out now (free plus evictable cached ones).
    pub fn available(&self) -> usize {
        self.free.len() + self.lru.len()
    }

    /// Blocks with no owner that still hold a cached prefix.
    pub fn cached(&self) -> usize {
        self.lru.len()
    }

    pub fn used(&self) -> usize {
        self.total() - self.available()
    }

    /// Prefix-cache hits and evictions so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.hits, self.evictions)
    }

    pub fn state(&self, b: BlockId) -> BlockState {
        let m = &self.meta[b as usize];
        if m.refs > 0 {
            BlockState::Used(m.refs)
        } else if m.hash.is_some() {
            BlockState::Cached
        } else {
            BlockState::Free
        }
    }

    pub fn refcount(&self, b: BlockId) -> u32 {
        self.meta[b as usize].refs
    }

    /// A block for one owner: a never-cached one if any, else the least recently used cached
    /// block (its prefix is forgotten). None when every block is in use.
    pub fn allocate(&mut self) -> Option<BlockId> {
        let b = match self.free.pop() {
            Some(b) => b,
            None => {
                let (_, b) = self.lru.pop_first()?;
                self.forget(b);
                self.evictions += 1;
                b
            }
        };
        self.meta[b as usize].refs = 1;
        Some(b)
    }

    /// One more owner of a used block (a forked sequence).
    pub fn retain(&mut self, b: BlockId) {
        let m = &mut self.meta[b as usize];
        assert!(m.refs > 0, "retain of unowned block {b}");
        m.refs += 1;
    }

    /// Drops one owner. The last owner's release keeps a registered block cached (most
    /// recently used) and returns any other to the free stack.
    pub fn release(&mut self, b: BlockId) {
        let tick = self.tick();
        let m = &mut self.meta[b as usize];
        assert!(m.refs > 0, "release of unowned block {b}");
        m.refs -= 1;
        if m.refs == 0 {
            if m.hash.is_some() {
                m.tick = tick;
                self.lru.insert(tick, b);
            } else {
                self.free.push(b);
            }
        }
    }

    /// Registers a full, used block under `hash` (its tokens and parent given for checking).
    /// A hash already registered keeps its first block; this one stays private.
    pub fn register(
        &mut self,
        b: BlockId,
        parent: Option<BlockHash>,
        tokens: &[u32],
        hash: BlockHash,
    ) {
        let m = &self.meta[b as usize];
        assert!(m.refs > 0, "register of unowned block {b}");
        if m.hash.is_some() || self.index.contains_key(&hash) {
            return;
        }
        self.index.insert(hash, b);
        let m = &mut self.meta[b as usize];
        m.hash = Some(hash);
        m.key = Some((parent, tokens.into()));
    }

    /// The block holding this prefix, with one more owner, if it is cached or in use.
    pub fn lookup(
        &mut self,
        parent: Option<BlockHash>,
        tokens: &[u32],
        hash: BlockHash,
    ) -> Option<BlockId> {
        let b = *self.index.get(&hash)?;
        let m = &self.meta[b as usize];
        match &m.key {
            Some((p, t)) if *p == parent && t[..] == *tokens => {}
            _ => return None,
        }
        if m.refs == 0 {
            self.lru.remove(&m.tick);
        }
        self.meta[b as usize].refs += 1;
        self.hits += 1;
        Some(b)
    }

    /// Whether `hash` names a block right now (no side effects).
    pub fn contains(&self, hash: BlockHash) -> bool {
        self.index.contains_key(&hash)
    }

    fn forget(&mut self, b: BlockId) {
        let m = &mut self.meta[b as usize];
        if let Some(h) = m.hash.take() {
            self.index.remove(&h);
        }
        m.key = None;
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Checks the invariants in the module doc; Err names the first one broken.
    pub fn check(&self) -> Result<(), String> {
        let n = self.meta.len();
        let mut seen = vec![0u8; n];
        for &b in &self.free {
            seen[b as usize] += 1;
            let m = &self.meta[b as usize];
            if m.refs != 0 || m.hash.is_some() {
                return Err(format!("free block {b} has refs {} / a hash", m.refs));
            }
        }
        for (&t, &b) in &self.lru {
            seen[b as usize] += 1;
            let m = &self.meta[b as usize];
            if m.refs != 0 || m.hash.is_none() || m.tick != t {
                return Err(format!("cached block {b} is inconsistent: {m:?}"));
            }
        }
        let mut used = 0;
        for (b, m) in self.meta.iter().enumerate() {
            if m.refs > 0 {
                used += 1;
                seen[b] += 1;
            }
            if seen[b] != 1 {
                return Err(format!("block {b} is listed {} times", seen[b]));
            }
            if let Some(h) = m.hash {
                if self.index.get(&h) != Some(&(b as BlockId)) {
                    return Err(format!("block {b}'s hash is not indexed to it"));
                }
            }
        }
        if used + self.free.len() + self.lru.len() != n {
            return Err("used + free + cached != total".into());
        }
        for (h, &b) in &self.index {
            if self.meta[b as usize].hash != Some(*h) {
                return Err(format!("index entry for block {b} is stale"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_release_and_exhaustion() {
        let mut a = BlockAllocator::new(3, 4);
        let b: Vec<_> = (0..3).map(|_| a.allocate().unwrap()).collect();
        assert_eq!(a.allocate(), None);
        assert_eq!(a.used(), 3);
        a.release(b[1]);
        assert_eq!(a.available(), 1);
        assert_eq!(a.allocate(), Some(b[1]));
        a.check().unwrap();
    }

    #[test]
    fn cached_blocks_are_found_and_evicted_oldest_first() {
        let mut a = BlockAllocator::new(2, 2);
        let h1 = BlockHash::of(None, &[1, 2]);
        let h2 = BlockHash::of(Some(h1), &[3, 4]);
        let (b1, b2) = (a.allocate().unwrap(), a.allocate().unwrap());
        a.register(b1, None, &[1, 2], h1);
        a.register(b2, Some(h1), &[3, 4], h2);
        a.release(b1);
        a.release(b2);
        assert_eq!((a.available(), a.cached()), (2, 2));
        // a hit revives the block with its content
        assert_eq!(a.lookup(None, &[1, 2], h1), Some(b1));
        assert_eq!(a.state(b1), BlockState::Used(1));
        // a wrong token list under the right hash is refused (collision guard)
        assert_eq!(a.lookup(Some(h1), &[3, 5], h2), None);
        // the only evictable block is b2
        assert_eq!(a.allocate(), Some(b2));
        assert!(!a.contains(h2));
        assert_eq!(a.counters(), (1, 1));
        a.check().unwrap();
    }

    #[test]
    fn shared_blocks_need_every_owner_to_release() {
        let mut a = BlockAllocator::new(1, 2);
        let b = a.allocate().unwrap();
        a.retain(b);
        a.release(b);
        assert_eq!(a.state(b), BlockState::Used(1));
        a.release(b);
        assert_eq!(a.state(b), BlockState::Free);
        a.check().unwrap();
    }
}
