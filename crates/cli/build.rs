//! Links like cortex-mlx (rpath, OpenBLAS); see crates/mlx/link_dependent.rs.
include!("../mlx/link_dependent.rs");

fn main() {
    link_like_cortex_mlx();
}
