//! Hard-negative mining: exact top-k retrieval over embeddings, then positive-aware selection.
//!
//! **Retrieval** ([`Search`], in `search`) finds, for every query, the `k` corpus rows of
//! highest score, exactly. The work is a grid of tasks — a block of queries against a span of
//! the corpus — each of which walks its span in tiles: the tile's rows are packed once,
//! multiplied against every query of the block by the register-tiled kernel of [`kernel`], and
//! each query's row of scores is scanned into a small per-query reservoir while it is still in
//! cache. No `Q × N` (or `block × N`) score matrix ever exists: memory is
//! `O(threads × (block + tile) × d + Q × k)`. Tasks run in parallel and their per-query lists
//! are merged; run the grid in chunks ([`Search::run`]) to report progress or stop between
//! chunks.
//!
//! Scores are exact and reproducible: each is one fused multiply-add chain over the dimensions
//! in order ([`kernel::dot`]), so it has the same bits for any tiling, thread count or
//! instruction set. Results are ordered by score, descending, and equal scores by corpus id,
//! ascending — a total order, so the top `k` is a unique set and a unique sequence.
//! Non-finite scores (NaN/inf in the embeddings, or overflow) are errors that name the row.
//! **Pair scores** ([`pair_scores`], in `pairs`) give the same score for given
//! `(query, corpus row)` pairs.
//!
//! **Selection** ([`select`], in `select`) turns each query's candidates into negatives with
//! sentence-transformers' semantics (see [`SelectParams`]) plus exclusions of the query's own
//! id and a seeded random sampling keyed by query.
//!
//! This file holds what the three share: the embeddings, the similarity, and the checks and
//! errors about corpus ids and non-finite scores.

pub mod kernel;
mod pairs;
mod search;
mod select;

use crate::batch::Ragged;
use crate::rng::purpose;
use crate::{CoreError, Result};

pub use kernel::Isa;
use kernel::f16_to_f32;
pub use pairs::{pair_scores, score};
pub use search::{Plan, Search, SearchOptions, TopK};
pub use select::{
    Candidates, Ranks, Removed, Sampling, SelectInputs, SelectParams, Selection, positives, select,
};

/// The purpose tag of the mining streams (random sampling of negatives).
pub const PURPOSE: u64 = purpose("mining");

/// How a query and a corpus row are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Similarity {
    /// The inner product of the vectors as given.
    Dot,
    /// The inner product of the L2-normalised vectors, `x / max(‖x‖, 1e-12)` (as
    /// `torch.nn.functional.normalize`), the norm taken in float64 and the quotient rounded
    /// to float32.
    Cosine,
}

impl Similarity {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "dot" => Ok(Similarity::Dot),
            "cosine" => Ok(Similarity::Cosine),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'dot' or 'cosine', got {other:?}"),
            )),
        }
    }
}

/// Row-major embedding values, read in place: float32, or IEEE float16 bit patterns (widened
/// to float32 exactly as they are read).
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
}

/// A `rows × dim` matrix of embeddings.
#[derive(Debug, Clone, Copy)]
pub struct Embeddings<'a> {
    values: Values<'a>,
    rows: usize,
    dim: usize,
}

impl<'a> Embeddings<'a> {
    pub fn new(arg: &str, values: Values<'a>, rows: usize, dim: usize) -> Result<Self> {
        let len = match values {
            Values::F32(v) => v.len(),
            Values::F16(v) => v.len(),
        };
        if dim == 0 {
            return Err(CoreError::shape(
                arg,
                "embeddings must have at least one dimension",
            ));
        }
        if rows.checked_mul(dim) != Some(len) {
            return Err(CoreError::shape(
                arg,
                format!("has {len} values, not rows × dim = {rows} × {dim}"),
            ));
        }
        Ok(Self { values, rows, dim })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `r` as float32 (normalised for cosine) into `out` (`dim` values).
    #[inline(always)]
    fn load_row(&self, r: usize, similarity: Similarity, out: &mut [f32]) {
        let d = self.dim;
        match self.values {
            Values::F32(v) => out.copy_from_slice(&v[r * d..(r + 1) * d]),
            Values::F16(v) => {
                for (o, &h) in out.iter_mut().zip(&v[r * d..(r + 1) * d]) {
                    *o = f16_to_f32(h);
                }
            }
        }
        if similarity == Similarity::Cosine {
            normalize(out);
        }
    }

    /// The first `(row, column, value)` that is not finite.
    fn first_non_finite(&self) -> Option<(usize, usize, f32)> {
        let d = self.dim;
        let find = |i: usize, x: f32| (!x.is_finite()).then_some((i / d, i % d, x));
        match self.values {
            Values::F32(v) => v.iter().enumerate().find_map(|(i, &x)| find(i, x)),
            Values::F16(v) => v
                .iter()
                .enumerate()
                .find_map(|(i, &h)| find(i, f16_to_f32(h))),
        }
    }
}

/// In place `x / max(‖x‖, 1e-12)`: the squares summed in float64 over 16 interleaved lanes
/// (then the lanes in order: a fixed, vectorisable order), the products rounded to float32.
#[inline(always)]
fn normalize(x: &mut [f32]) {
    let mut lanes = [0f64; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f64::from(v) * f64::from(v);
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += f64::from(v) * f64::from(v);
    }
    let norm = lanes.iter().sum::<f64>().sqrt();
    let inv = 1.0 / norm.max(1e-12);
    for v in x.iter_mut() {
        *v = (f64::from(*v) * inv) as f32;
    }
}

/// Checks that queries and corpus have the same dimension.
fn check_same_dim(queries: &Embeddings<'_>, corpus: &Embeddings<'_>) -> Result<()> {
    if queries.dim() != corpus.dim() {
        return Err(CoreError::shape(
            "queries",
            format!(
                "has dimension {} but corpus has dimension {}",
                queries.dim(),
                corpus.dim()
            ),
        ));
    }
    Ok(())
}

/// The error for a non-finite score: the first non-finite input value, else overflow.
fn non_finite(queries: &Embeddings<'_>, corpus: &Embeddings<'_>) -> CoreError {
    for (arg, m) in [("queries", queries), ("corpus", corpus)] {
        if let Some((r, c, v)) = m.first_non_finite() {
            return CoreError::invalid(
                arg,
                format!("row {r} has a non-finite value ({v}) at column {c}"),
            );
        }
    }
    CoreError::invalid(
        "corpus",
        "a score overflows float32: the embeddings are too large for similarity='dot'",
    )
}

/// Checks every id of `rows` lies in `[0, n)`.
fn check_corpus_ids(arg: &str, rows: &Ragged<'_, i64>, n: usize) -> Result<()> {
    if rows
        .values
        .iter()
        .all(|&id| id >= 0 && (id as u64) < n as u64)
    {
        return Ok(());
    }
    for r in 0..rows.rows() {
        for (i, &id) in rows.row(r).iter().enumerate() {
            if id < 0 || id as u64 >= n as u64 {
                return Err(CoreError::invalid(
                    arg,
                    format!("[{r}][{i}] = {id} is not a corpus row (the corpus has {n} rows)"),
                ));
            }
        }
    }
    Ok(())
}
