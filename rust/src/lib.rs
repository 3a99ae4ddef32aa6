//! vqfast_io: the Rust data-loading core of vqfast.
//!
//! Pure-Rust modules (no PyO3) live beside this file and are tested with `cargo test`.
//! `python.rs` is the one thin glue file that touches PyO3; it is compiled only with the
//! `python` feature, which maturin turns on when it builds the `vqfast._io` extension.

pub mod clips;
pub mod dtype;
pub mod error;
pub mod frames;
pub mod limits;
pub mod npy;
pub mod pickle;
pub mod plan;
pub mod prefetch;
pub mod ptfile;
pub mod rearrange;
pub mod shards;
#[cfg(feature = "video")]
pub mod video_file;
pub mod zipdir;

#[cfg(feature = "python")]
mod python;
