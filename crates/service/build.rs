//! Links like cortex-mlx (rpath, OpenBLAS); see crates/mlx/link_dependent.rs. The direct
//! cortex-mlx dependency in Cargo.toml is what hands this script its DEP_MLX_* variables.
include!("../mlx/link_dependent.rs");

fn main() {
    link_like_cortex_mlx();
}
