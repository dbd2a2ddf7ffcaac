//! # lmobjectives-core
//!
//! Pure-Rust kernels behind the `lmobjectives` Python package: plain functions over slices, no
//! Python types. Every kernel
//! - validates its inputs first and returns [`CoreError`] (never panics on bad input),
//! - draws randomness only from keyed streams ([`rng`]), so output is a pure function of
//!   (seed, epoch, row key) and independent of the thread count,
//! - runs rows in parallel through [`parallel::for_each_mut`].

pub mod batch;
pub mod contrastive;
pub mod denoise;
pub mod error;
pub mod ids;
pub mod limits;
pub mod masking;
pub mod mining;
pub mod packing;
pub mod pair_batch;
pub mod pairs;
pub mod parallel;
pub mod recipes;
pub mod rl;
pub mod rng;
pub mod units;
pub mod word_starts;

pub use error::{CoreError, Result, check_probability};
