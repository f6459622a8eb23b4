//! The targets that reach MLX (through cortex-hub or cortex-engine) carry libmlx's rpath like
//! every binary of the workspace; see crates/mlx/link_dependent.rs.
include!("../crates/mlx/link_dependent.rs");

fn main() {
    link_like_cortex_mlx();
}
