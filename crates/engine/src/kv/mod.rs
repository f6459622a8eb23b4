//! The paged KV cache of the serving engine.
//!
//! One pool of KV memory for the whole engine, sized once from a byte budget: per layer, a
//! keys array and a values array of `[num_blocks * block_size, kv_heads, head_dim]`. A token's
//! K/V live in one *slot*; slots come in blocks of `block_size` handed out by the
//! [`allocator::BlockAllocator`]. Each sequence keeps a block table ([`SeqBlocks`]): position p
//! lives in slot `blocks[p / block_size] * block_size + p % block_size`.
//!
//! A forward pass over several sequences writes every new token's K/V with one scatter per
//! layer (in place: MLX reuses the pool's buffer because nothing else holds it) and gathers
//! each sequence's slots for its attention, so sequences of any lengths share one pass and a
//! sequence's blocks need not be contiguous.
//!
//! Prefix caching: when a block fills, it is registered under the hash of its tokens chained
//! with the previous block's hash. A new sequence whose prompt starts with the same full blocks
//! takes those blocks (refcount + 1) instead of computing them. Shared blocks are never
//! written: a sequence that must write into a block it shares (a fork that continues a partly
//! filled block) first gets a private copy (copy-on-write).
pub mod allocator;
mod pool;

pub use allocator::{BlockAllocator, BlockHash, BlockId, BlockState};
pub use pool::{BatchView, KvPool};

/// One sequence's block table and the hashes of its leading full blocks.
#[derive(Clone, Debug, Default)]
pub struct SeqBlocks {
    pub blocks: Vec<BlockId>,
    /// Hash of block i for every full block registered or matched so far (a prefix of
    /// `blocks`).
    pub hashes: Vec<BlockHash>,
}

impl SeqBlocks {
    /// Token slots the table can hold.
    pub fn capacity(&self, block_size: usize) -> usize {
        self.blocks.len() * block_size
    }

    /// The pool slot of position `pos`.
    pub fn slot(&self, pos: usize, block_size: usize) -> i32 {
        (self.blocks[pos / block_size] as usize * block_size + pos % block_size) as i32
    }

    /// Blocks needed beyond the current table to hold `tokens` positions.
    pub fn blocks_needed(&self, tokens: usize, block_size: usize) -> usize {
        tokens
            .div_ceil(block_size)
            .saturating_sub(self.blocks.len())
    }

    /// Grows the table to hold `tokens` positions. False (with whatever it got kept) when the
    /// allocator runs out.
    pub fn reserve(&mut self, alloc: &mut BlockAllocator, tokens: usize) -> bool {
        while self.capacity(alloc.block_size()) < tokens {
            match alloc.allocate() {
                Some(b) => self.blocks.push(b),
                None => return false,
            }
        }
        true
    }

    /// Gives every block back (registered full blocks stay in the prefix cache).
    pub fn release(&mut self, alloc: &mut BlockAllocator) {
        for b in self.blocks.drain(..) {
            alloc.release(b);
        }
        self.hashes.clear();
    }

    /// A second owner of the same blocks (a branch of the conversation).
    pub fn fork(&self, alloc: &mut BlockAllocator) -> SeqBlocks {
        for &b in &self.blocks {
            alloc.retain(b);
        }
        self.clone()
    }

    /// Before writing positions `start..end`: every block in that range that is shared gets
    /// replaced by a private block. Returns the (source, copy) pairs the pool must copy, or
    /// None when the allocator runs out (nothing changed).
    pub fn make_writable(
        &mut self,
        alloc: &mut BlockAllocator,
        start: usize,
        end: usize,
    ) -> Option<Vec<(BlockId, BlockId)>> {
        let bs = alloc.block_size();
        if start >= end {
            return Some(Vec::new());
        }
        let shared: Vec<usize> = (start / bs..end.div_ceil(bs).min(self.blocks.len()))
            .filter(|&i| alloc.refcount(self.blocks[i]) > 1)
            .collect();
        if shared.len() > alloc.available() {
            return None;
        }
        let mut copies = Vec::new();
        for i in shared {
            let fresh = alloc.allocate().expect("checked available");
            let old = std::mem::replace(&mut self.blocks[i], fresh);
            alloc.release(old);
            copies.push((old, fresh));
            // a written block is no longer the registered content
            self.hashes.truncate(i);
        }
        Some(copies)
    }

    /// Registers the blocks `tokens` (the positions whose K/V are computed) fill completely.
    pub fn register_full(&mut self, alloc: &mut BlockAllocator, tokens: &[u32]) {
        let bs = alloc.block_size();
        let full = (tokens.len() / bs).min(self.blocks.len());
        while self.hashes.len() < full {
            let i = self.hashes.len();
            let parent = self.hashes.last().copied();
            let chunk = &tokens[i * bs..(i + 1) * bs];
            let h = BlockHash::of(parent, chunk);
            alloc.register(self.blocks[i], parent, chunk, h);
            self.hashes.push(h);
        }
    }

    /// Takes the cached blocks that hold a prefix of `tokens`, at most `max_blocks`.
    pub fn match_prefix(alloc: &mut BlockAllocator, tokens: &[u32], max_blocks: usize) -> Self {
        let bs = alloc.block_size();
        let mut seq = SeqBlocks::default();
        for chunk in tokens.chunks_exact(bs).take(max_blocks) {
            let parent = seq.hashes.last().copied();
            let h = BlockHash::of(parent, chunk);
            match alloc.lookup(parent, chunk, h) {
                Some(b) => {
                    seq.blocks.push(b);
                    seq.hashes.push(h);
                }
                None => break,
            }
        }
        seq
    }
}

#[cfg(test)]
mod tests;
