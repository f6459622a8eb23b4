//! Counter-based PRNG (explicit keys, so a seed reproduces a stream exactly) and sampling.
use crate::array::{wrap, Array, Dtype};
use crate::error::Result;
use crate::ffi::bridge;
use crate::ops::opt_ptr;

pub fn key(seed: u64) -> Result<Array> {
    wrap("random.key", bridge::random_key(seed))
}

/// `num` new keys from `key`, shape [num, 2].
pub fn split(key: &Array, num: i32) -> Result<Array> {
    wrap("random.split", bridge::random_split(&key.0, num))
}

/// Samples an index from unnormalized log-probabilities along `axis`.
pub fn categorical(logits: &Array, axis: i32, key: Option<&Array>) -> Result<Array> {
    // Safety: the pointer is null or borrows an Array alive for the call.
    wrap("random.categorical", unsafe {
        bridge::categorical(&logits.0, axis, opt_ptr(key))
    })
}

pub fn uniform(shape: &[i32], dtype: Dtype, key: Option<&Array>) -> Result<Array> {
    // Safety: as above.
    wrap("random.uniform", unsafe {
        bridge::uniform(shape, dtype as u8, opt_ptr(key))
    })
}
