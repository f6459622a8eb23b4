//! The process's allocator on Linux: jemalloc, for Rust and, because its symbols are
//! unprefixed, for MLX's C++ code too (the executable's `malloc` is the one libmlx.so binds to).
//!
//! Why: MLX builds a graph of a few hundred nodes per decode step, each a handful of small
//! allocations made on the thread that builds it and freed on the stream thread that evaluates
//! it. glibc's malloc spent a third of the graph-building thread's time on that
//! (`_int_malloc`, `malloc_consolidate`, `unlink_chunk`) on a 2-core machine where that thread
//! competes with the kernel threads for a core. With jemalloc, batch-8 float decode of SmolLM2
//! went from 297 to 381 tok/s and one stream from 112 to 140 (docs/ARCHITECTURE.md has the
//! runs). macOS keeps its own malloc (the unprefixed symbols are Linux-only).
#[cfg(target_os = "linux")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
