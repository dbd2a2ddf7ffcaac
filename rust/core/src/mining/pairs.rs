//! Scores of given `(query, corpus row)` pairs, exactly as the search computes them.

use std::ops::Range;

use super::kernel::{Isa, StripFn, Tiled, dispatch, dot};
use super::{Embeddings, Similarity, check_corpus_ids, check_same_dim, non_finite};
use crate::Result;
use crate::batch::Ragged;
use crate::parallel::for_each_mut;

/// The score of query `q` with corpus row `c`, exactly as [`Search`](super::Search) computes it.
pub fn score(
    queries: &Embeddings<'_>,
    corpus: &Embeddings<'_>,
    sim: Similarity,
    q: usize,
    c: usize,
) -> f32 {
    let d = queries.dim();
    let (mut a, mut b) = (vec![0f32; d], vec![0f32; d]);
    queries.load_row(q, sim, &mut a);
    corpus.load_row(c, sim, &mut b);
    dot(&a, &b)
}

/// Scores of `(query, corpus row)` pairs: for each query `q`, the corpus rows `pairs.row(q)`.
/// Exactly the scores [`Search`](super::Search) computes for the same pairs; an id outside the corpus or a
/// non-finite score is an error naming `arg`.
pub fn pair_scores(
    arg: &str,
    queries: Embeddings<'_>,
    corpus: Embeddings<'_>,
    similarity: Similarity,
    pairs: &Ragged<'_, i64>,
    threads: usize,
) -> Result<Vec<f32>> {
    check_same_dim(&queries, &corpus)?;
    if pairs.rows() != queries.rows() {
        return Err(crate::CoreError::shape(
            arg,
            format!("has {} rows for {} queries", pairs.rows(), queries.rows()),
        ));
    }
    check_corpus_ids(arg, pairs, corpus.rows())?;
    const ROWS: usize = 256;
    let chunks = queries.rows().div_ceil(ROWS);
    let mut outs: Vec<Vec<f32>> = vec![Vec::new(); chunks];
    let threads = crate::parallel::threads_for(threads, pairs.values.len(), 4096);
    for_each_mut(threads, &mut outs, |c, out| {
        let job = PairChunk {
            queries: &queries,
            corpus: &corpus,
            similarity,
            pairs,
            rows: c * ROWS..((c + 1) * ROWS).min(queries.rows()),
        };
        *out = dispatch(Isa::best(), &job);
    })?;
    let scores: Vec<f32> = outs.concat();
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(non_finite(&queries, &corpus));
    }
    Ok(scores)
}

struct PairChunk<'s, 'a> {
    queries: &'s Embeddings<'a>,
    corpus: &'s Embeddings<'a>,
    similarity: Similarity,
    pairs: &'s Ragged<'s, i64>,
    rows: Range<usize>,
}

impl Tiled for PairChunk<'_, '_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn run<const MR: usize, const NR: usize>(&self, _strip: StripFn) -> Vec<f32> {
        let d = self.queries.dim();
        let (mut a, mut b) = (vec![0f32; d], vec![0f32; d]);
        let mut out = Vec::new();
        for q in self.rows.clone() {
            let row = self.pairs.row(q);
            if row.is_empty() {
                continue;
            }
            self.queries.load_row(q, self.similarity, &mut a);
            for &c in row {
                self.corpus.load_row(c as usize, self.similarity, &mut b);
                out.push(dot(&a, &b));
            }
        }
        out
    }
}
