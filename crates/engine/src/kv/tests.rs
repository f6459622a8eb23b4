//! Block tables over the allocator: growth, prefix matching, forks and copy-on-write, and a
//! randomized run of thousands of operations with the invariants checked after each.
use super::*;

/// A tiny deterministic PRNG (xorshift64*), so failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn slots_follow_the_block_table() {
    let mut a = BlockAllocator::new(8, 4);
    let mut s = SeqBlocks::default();
    assert!(s.reserve(&mut a, 9));
    assert_eq!(s.blocks, vec![0, 1, 2]);
    assert_eq!(s.slot(0, 4), 0);
    assert_eq!(s.slot(5, 4), 5);
    s.blocks.swap(0, 2);
    assert_eq!(s.slot(1, 4), 9);
    assert_eq!(s.blocks_needed(13, 4), 1);
}

#[test]
fn a_second_prompt_reuses_the_shared_full_blocks() {
    let mut a = BlockAllocator::new(16, 4);
    let first: Vec<u32> = (0..10).collect();
    let mut s1 = SeqBlocks::default();
    assert!(s1.reserve(&mut a, first.len()));
    s1.register_full(&mut a, &first);
    assert_eq!(s1.hashes.len(), 2);
    // same first 8 tokens, different tail: two blocks shared while s1 still runs
    let mut second: Vec<u32> = (0..8).collect();
    second.extend([99, 98, 97]);
    let s2 = SeqBlocks::match_prefix(&mut a, &second, 10);
    assert_eq!(s2.blocks, s1.blocks[..2].to_vec());
    assert_eq!(a.refcount(s1.blocks[0]), 2);
    // a prompt that differs inside the first block matches nothing
    let other: Vec<u32> = vec![0, 1, 2, 7, 4, 5, 6, 7];
    assert!(SeqBlocks::match_prefix(&mut a, &other, 10)
        .blocks
        .is_empty());
    // after both end, the blocks stay cached and are found again
    let mut s2 = s2;
    s1.release(&mut a);
    s2.release(&mut a);
    assert_eq!(a.cached(), 2);
    let s3 = SeqBlocks::match_prefix(&mut a, &first, 1);
    assert_eq!(s3.blocks.len(), 1, "max_blocks bounds the match");
    a.check().unwrap();
}

#[test]
fn a_fork_copies_only_the_block_it_writes() {
    let mut a = BlockAllocator::new(8, 4);
    let mut s = SeqBlocks::default();
    assert!(s.reserve(&mut a, 6)); // blocks 0 (full) and 1 (half)
    let mut f = s.fork(&mut a);
    assert_eq!(a.refcount(s.blocks[1]), 2);
    // the fork appends position 6: block 1 is shared, so it gets a private copy
    let copies = f.make_writable(&mut a, 6, 7).unwrap();
    assert_eq!(copies, vec![(s.blocks[1], f.blocks[1])]);
    assert_ne!(f.blocks[1], s.blocks[1]);
    assert_eq!(f.blocks[0], s.blocks[0], "history stays shared");
    assert_eq!(a.refcount(s.blocks[1]), 1);
    // the original now owns its block alone: no copy
    assert!(s.make_writable(&mut a, 6, 7).unwrap().is_empty());
    a.check().unwrap();
}

#[test]
fn randomized_admit_grow_fork_free_keeps_the_invariants() {
    let bs = 4;
    let mut a = BlockAllocator::new(64, bs);
    let mut rng = Rng(0x5eed_1234);
    // (tokens, table)
    let mut seqs: Vec<(Vec<u32>, SeqBlocks)> = Vec::new();
    let prompts: Vec<Vec<u32>> = (0..6)
        .map(|p| {
            (0..(5 + p * 3) as u32)
                .map(|t| t % 7 + p as u32 % 3)
                .collect()
        })
        .collect();
    let mut ops = [0usize; 5];
    for _ in 0..5000 {
        match rng.below(5) {
            // admit: match the prefix cache, then reserve the rest
            0 => {
                let tokens = prompts[rng.below(prompts.len())].clone();
                let max = (tokens.len() - 1) / bs;
                let mut s = SeqBlocks::match_prefix(&mut a, &tokens, max);
                if s.reserve(&mut a, tokens.len()) {
                    s.register_full(&mut a, &tokens);
                    seqs.push((tokens, s));
                } else {
                    s.release(&mut a);
                }
                ops[0] += 1;
            }
            // grow: append a token (copy-on-write first when the block is shared)
            1 if !seqs.is_empty() => {
                let i = rng.below(seqs.len());
                let (tokens, s) = &mut seqs[i];
                let pos = tokens.len();
                if s.reserve(&mut a, pos + 1) && s.make_writable(&mut a, pos, pos + 1).is_some() {
                    tokens.push(rng.below(5) as u32);
                    s.register_full(&mut a, tokens);
                }
                ops[1] += 1;
            }
            // fork
            2 if !seqs.is_empty() => {
                let i = rng.below(seqs.len());
                let f = seqs[i].1.fork(&mut a);
                let t = seqs[i].0.clone();
                seqs.push((t, f));
                ops[2] += 1;
            }
            // free
            3 | 4 if !seqs.is_empty() => {
                let i = rng.below(seqs.len());
                let (_, mut s) = seqs.swap_remove(i);
                s.release(&mut a);
                ops[3] += 1;
            }
            _ => {}
        }
        a.check().unwrap();
        // refcounts equal the number of tables holding each block
        let mut owners = vec![0u32; a.total()];
        for (_, s) in &seqs {
            for &b in &s.blocks {
                owners[b as usize] += 1;
            }
        }
        for (b, &n) in owners.iter().enumerate() {
            assert_eq!(a.refcount(b as BlockId), n, "block {b}");
        }
        // no table holds the same block twice
        for (_, s) in &seqs {
            let mut v = s.blocks.clone();
            v.sort();
            v.dedup();
            assert_eq!(v.len(), s.blocks.len());
        }
    }
    assert!(ops.iter().take(4).all(|&n| n > 500), "{ops:?}");
    for (_, mut s) in seqs.drain(..) {
        s.release(&mut a);
    }
    a.check().unwrap();
    assert_eq!(a.available(), a.total(), "every block comes back");
    assert!(a.counters().0 > 0, "the prefix cache was hit");
}
