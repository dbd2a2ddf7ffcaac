//! Hard-negative mining: exact top-k retrieval over embeddings, then positive-aware selection.
//!
//! **Retrieval** ([`Search`]) finds, for every query, the `k` corpus rows of highest score, exactly.
//! The work is a grid of tasks — a block of queries against a span of the corpus — each of which
//! walks its span in tiles: the tile's rows are packed once, multiplied against every query of
//! the block by the register-tiled kernel of [`kernel`], and each query's row of scores is
//! scanned into a small per-query reservoir while it is still in cache. No `Q × N` (or
//! `block × N`) score matrix ever exists: memory is `O(threads × (block + tile) × d + Q × k)`.
//! Tasks run in parallel and their per-query lists are merged; run the grid in chunks
//! ([`Search::run`]) to report progress or stop between chunks.
//!
//! Scores are exact and reproducible: each is one fused multiply-add chain over the dimensions
//! in order ([`kernel::dot`]), so it has the same bits for any tiling, thread count or
//! instruction set. Results are ordered by score, descending, and equal scores by corpus id,
//! ascending — a total order, so the top `k` is a unique set and a unique sequence.
//! Non-finite scores (NaN/inf in the embeddings, or overflow) are errors that name the row.
//!
//! **Selection** ([`select`]) turns each query's candidates into negatives with
//! sentence-transformers' semantics (see [`SelectParams`]) plus exclusions of the query's own
//! id and a seeded random sampling keyed by query.

pub mod kernel;

use std::ops::Range;

use crate::batch::Ragged;
use crate::parallel::{for_each_mut, resolve_threads};
use crate::rng::{RowKeys, Streams, purpose};
use crate::{CoreError, Result};

pub use kernel::Isa;
use kernel::{StripFn, Tiled, dispatch, dot, f16_to_f32};

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

/// Writes `row` as row `r` of a packed operand of panels `w` rows wide (layout `[panel][p][i]`).
#[inline(always)]
fn scatter(row: &[f32], packed: &mut [f32], r: usize, w: usize) {
    let d = row.len();
    let base = (r / w) * d * w + r % w;
    for (p, &v) in row.iter().enumerate() {
        packed[base + p * w] = v;
    }
}

/// `a` ranks before `b`: higher score, or equal score and lower id.
#[inline(always)]
fn better(a_score: f32, a_id: u64, b_score: f32, b_id: u64) -> bool {
    a_score > b_score || (a_score == b_score && a_id < b_id)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    score: f32,
    id: u64,
}

fn rank(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    // Scores are finite (checked while scanning), so partial_cmp always answers.
    b.score
        .partial_cmp(&a.score)
        .unwrap_or(std::cmp::Ordering::Equal)
        .then(a.id.cmp(&b.id))
}

/// Per-query candidate buffers of a task: up to `cap` entries, compacted to the best `k`
/// whenever full; `thr` is the `k`-th best after the last compaction (nothing worse can enter).
struct Reservoirs {
    k: usize,
    cap: usize,
    entries: Vec<Entry>,
    len: Vec<usize>,
    thr: Vec<Entry>,
}

/// Scores are scanned in chunks of this many: one vectorised test per chunk (any candidate?
/// any non-finite value?), the scalar path only for chunks with a candidate.
const SCAN_CHUNK: usize = 32;

impl Reservoirs {
    fn new(queries: usize, k: usize) -> Self {
        let cap = (2 * k).max(k + 16);
        let open = Entry {
            score: f32::NEG_INFINITY,
            id: u64::MAX,
        };
        Self {
            k,
            cap,
            entries: vec![open; queries * cap],
            len: vec![0; queries],
            thr: vec![open; queries],
        }
    }

    /// Offers `scores[j]` as corpus row `id0 + j` to query `q`. Returns `false` (and stops) at
    /// a non-finite score.
    #[inline(always)]
    fn scan(&mut self, q: usize, scores: &[f32], id0: usize) -> bool {
        let mut thr = self.thr[q];
        for (c, chunk) in scores.chunks(SCAN_CHUNK).enumerate() {
            let mut hits = 0u32;
            let mut bad = 0u32;
            for &s in chunk {
                hits += u32::from(s >= thr.score);
                bad |= u32::from(s.to_bits() & 0x7f80_0000 == 0x7f80_0000);
            }
            if bad != 0 {
                return false;
            }
            if hits == 0 {
                continue;
            }
            let base = id0 + c * SCAN_CHUNK;
            for (j, &s) in chunk.iter().enumerate() {
                let id = (base + j) as u64;
                if s >= thr.score && better(s, id, thr.score, thr.id) {
                    thr = self.push(q, Entry { score: s, id }, thr);
                }
            }
        }
        true
    }

    #[inline(always)]
    fn push(&mut self, q: usize, e: Entry, thr: Entry) -> Entry {
        let slot = &mut self.len[q];
        self.entries[q * self.cap + *slot] = e;
        *slot += 1;
        if *slot < self.cap {
            return thr;
        }
        let k = self.k;
        let list = &mut self.entries[q * self.cap..(q + 1) * self.cap];
        list.select_nth_unstable_by(k - 1, rank);
        *slot = k;
        let t = list[k - 1];
        self.thr[q] = t;
        t
    }

    /// The best `k` of query `q`, sorted, into `ids`/`scores`; returns how many.
    fn finish(&mut self, q: usize, ids: &mut [u64], scores: &mut [f32]) -> usize {
        let k = self.k;
        let len = self.len[q];
        let list = &mut self.entries[q * self.cap..q * self.cap + len];
        if len > k {
            list.select_nth_unstable_by(k - 1, rank);
        }
        let n = len.min(k);
        let list = &mut list[..n];
        list.sort_unstable_by(rank);
        for (i, e) in list.iter().enumerate() {
            ids[i] = e.id;
            scores[i] = e.score;
        }
        n
    }
}

/// How the grid is cut (all sizes in rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Queries per task (a multiple of the kernel's `MR`).
    pub query_block: usize,
    /// Corpus rows packed at once (a multiple of the kernel's `NR`).
    pub corpus_tile: usize,
    /// Corpus rows per task (a multiple of `corpus_tile`).
    pub span: usize,
}

/// Options of a [`Search`]; `None` sizes are chosen from the shapes and the thread count.
#[derive(Debug, Clone, Copy)]
pub struct SearchOptions {
    pub k: usize,
    pub similarity: Similarity,
    pub isa: Option<Isa>,
    pub query_block: Option<usize>,
    pub corpus_tile: Option<usize>,
    pub span: Option<usize>,
}

impl SearchOptions {
    pub fn new(k: usize, similarity: Similarity) -> Self {
        Self {
            k,
            similarity,
            isa: None,
            query_block: None,
            corpus_tile: None,
            span: None,
        }
    }
}

/// The best `k` corpus rows of each query: `rows × k` ids and scores, each row sorted by
/// score (descending) then id; `len[q]` entries are filled, the rest are `-1` / `-inf`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    pub k: usize,
    pub ids: Vec<i64>,
    pub scores: Vec<f32>,
    pub len: Vec<usize>,
}

impl TopK {
    pub fn empty(rows: usize, k: usize) -> Self {
        Self {
            k,
            ids: vec![-1; rows * k],
            scores: vec![f32::NEG_INFINITY; rows * k],
            len: vec![0; rows],
        }
    }

    pub fn rows(&self) -> usize {
        self.len.len()
    }

    /// Merges a sorted list of `n` entries into row `q`, keeping the best `k`.
    fn merge(&mut self, q: usize, ids: &[u64], scores: &[f32], buf: &mut Vec<(f32, i64)>) {
        let k = self.k;
        let have = self.len[q];
        let (row_ids, row_scores) = (
            &mut self.ids[q * k..(q + 1) * k],
            &mut self.scores[q * k..(q + 1) * k],
        );
        buf.clear();
        let (mut i, mut j) = (0, 0);
        while buf.len() < k && (i < have || j < ids.len()) {
            let take_old = j >= ids.len()
                || (i < have && better(row_scores[i], row_ids[i] as u64, scores[j], ids[j]));
            if take_old {
                buf.push((row_scores[i], row_ids[i]));
                i += 1;
            } else {
                buf.push((scores[j], ids[j] as i64));
                j += 1;
            }
        }
        for (slot, &(s, id)) in buf.iter().enumerate() {
            row_scores[slot] = s;
            row_ids[slot] = id;
        }
        self.len[q] = buf.len();
    }
}

/// The candidates one task found: `rows × k` sorted lists for queries `q0 ..`.
struct TaskOut {
    q0: usize,
    ids: Vec<u64>,
    scores: Vec<f32>,
    len: Vec<usize>,
}

/// A validated exact top-k search (see the module documentation).
#[derive(Debug, Clone)]
pub struct Search<'a> {
    queries: Embeddings<'a>,
    corpus: Embeddings<'a>,
    k: usize,
    similarity: Similarity,
    isa: Isa,
    plan: Plan,
    query_blocks: usize,
    spans: usize,
}

/// Score multiply-adds per task the automatic plan aims at (~0.1–0.2 s on one core): short
/// enough to stop promptly between chunks, long enough that each query's reservoir warms up
/// once per many thousand rows and merging is noise.
const TASK_FMAS: f64 = 1e10;
const MAX_QUERY_BLOCK: usize = 1024;
/// Floats of packed corpus per tile (512 KiB): it stays in L2 while every query block row
/// streams past it.
const TILE_FLOATS: usize = 131_072;

impl<'a> Search<'a> {
    /// Validates the shapes and plans the grid for `threads` threads (0 = all CPUs).
    pub fn new(
        queries: Embeddings<'a>,
        corpus: Embeddings<'a>,
        options: &SearchOptions,
        threads: usize,
    ) -> Result<Self> {
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
        let n = corpus.rows();
        if n == 0 {
            return Err(CoreError::shape("corpus", "is empty"));
        }
        let k = options.k;
        if k == 0 {
            return Err(CoreError::invalid("k", "must be at least 1"));
        }
        if k > n {
            return Err(CoreError::invalid(
                "k",
                format!("is {k} but the corpus has only {n} rows"),
            ));
        }
        let isa = match options.isa {
            Some(isa) if Isa::available().contains(&isa) => isa,
            Some(isa) => {
                return Err(CoreError::invalid(
                    "isa",
                    format!("{} is not supported by this CPU", isa.name()),
                ));
            }
            None => Isa::best(),
        };
        let (mr, nr) = isa.tile();
        let d = corpus.dim();
        let q = queries.rows();
        let threads = resolve_threads(threads);
        let round_up = |x: usize, m: usize| x.div_ceil(m).max(1) * m;
        let check = |arg: &str, v: Option<usize>| match v {
            Some(0) => Err(CoreError::invalid(arg, "must be at least 1")),
            _ => Ok(v),
        };
        // As many queries per task as fit L2 beside a corpus tile (each tile is packed once
        // per query block, so fewer blocks pack less), in equal blocks; threads split the
        // corpus instead when there are few blocks.
        let query_block = match check("query_block", options.query_block)? {
            Some(b) => round_up(b, mr),
            None => round_up(q.div_ceil(q.div_ceil(MAX_QUERY_BLOCK).max(1)), mr),
        };
        let corpus_tile = match check("corpus_tile", options.corpus_tile)? {
            Some(t) => round_up(t, nr),
            None => round_up((TILE_FLOATS / d).clamp(nr, 4096), nr).min(round_up(n, nr)),
        };
        let query_blocks = q.div_ceil(query_block);
        let span = match check("span", options.span)? {
            Some(s) => round_up(s, corpus_tile),
            None => {
                let per_task = (TASK_FMAS / (query_block.min(q.max(1)) * d) as f64) as usize;
                let mut span = round_up(per_task.max(corpus_tile), corpus_tile);
                // Enough tasks for every thread when there are few query blocks.
                let spans_wanted = threads.div_ceil(query_blocks.max(1));
                if n.div_ceil(span) < spans_wanted {
                    span = round_up(n.div_ceil(spans_wanted), corpus_tile);
                }
                span.min(round_up(n, corpus_tile))
            }
        };
        let spans = n.div_ceil(span);
        Ok(Self {
            queries,
            corpus,
            k,
            similarity: options.similarity,
            isa,
            plan: Plan {
                query_block,
                corpus_tile,
                span,
            },
            query_blocks,
            spans,
        })
    }

    pub fn plan(&self) -> Plan {
        self.plan
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of tasks in the grid (query blocks × corpus spans, query-block major).
    pub fn tasks(&self) -> usize {
        self.query_blocks * self.spans
    }

    /// An empty result to run tasks into.
    pub fn start(&self) -> TopK {
        TopK::empty(self.queries.rows(), self.k)
    }

    /// A number of tasks per [`Search::run`] call that keeps every thread busy and each call
    /// short (about a tenth of a second on one core per thread).
    pub fn chunk(&self, threads: usize) -> usize {
        (2 * resolve_threads(threads)).min(self.tasks()).max(1)
    }

    fn bounds(&self, task: usize) -> (Range<usize>, Range<usize>) {
        let (qb, sp) = (task / self.spans, task % self.spans);
        let q0 = qb * self.plan.query_block;
        let c0 = sp * self.plan.span;
        (
            q0..(q0 + self.plan.query_block).min(self.queries.rows()),
            c0..(c0 + self.plan.span).min(self.corpus.rows()),
        )
    }

    /// Runs `tasks` (a range of task numbers) on `threads` threads and merges their
    /// candidates into `into`. Any order and any chunking of the tasks gives the same result.
    pub fn run(&self, tasks: Range<usize>, into: &mut TopK, threads: usize) -> Result<()> {
        if tasks.end > self.tasks() || into.rows() != self.queries.rows() || into.k != self.k {
            return Err(CoreError::Internal(
                "search: tasks or result do not belong to this search".into(),
            ));
        }
        let mut outs: Vec<Option<TaskOut>> = (0..tasks.len()).map(|_| None).collect();
        let threads = resolve_threads(threads).min(tasks.len().max(1));
        for_each_mut(threads, &mut outs, |i, out| {
            *out = dispatch(
                self.isa,
                &Task {
                    search: self,
                    task: tasks.start + i,
                },
            );
        })?;
        let mut buf = Vec::with_capacity(self.k);
        for out in &outs {
            let Some(out) = out else {
                return Err(non_finite(&self.queries, &self.corpus));
            };
            for (r, &n) in out.len.iter().enumerate() {
                let row = r * self.k..r * self.k + n;
                into.merge(
                    out.q0 + r,
                    &out.ids[row.clone()],
                    &out.scores[row],
                    &mut buf,
                );
            }
        }
        Ok(())
    }

    /// Runs the whole grid.
    pub fn run_all(&self, threads: usize) -> Result<TopK> {
        let mut out = self.start();
        let chunk = self.chunk(threads);
        let mut t = 0;
        while t < self.tasks() {
            let end = (t + chunk).min(self.tasks());
            self.run(t..end, &mut out, threads)?;
            t = end;
        }
        Ok(out)
    }
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

struct Task<'s, 'a> {
    search: &'s Search<'a>,
    task: usize,
}

impl Tiled for Task<'_, '_> {
    type Output = Option<TaskOut>;

    #[inline(always)]
    fn run<const MR: usize, const NR: usize>(&self, strip: StripFn) -> Option<TaskOut> {
        let s = self.search;
        let (qs, cs) = s.bounds(self.task);
        let (d, k, sim) = (s.corpus.dim(), s.k, s.similarity);
        let nq = qs.len();
        let a_panels = nq.div_ceil(MR);
        let mut row = vec![0f32; d];
        let mut pa = vec![0f32; a_panels * MR * d];
        for r in 0..nq {
            s.queries.load_row(qs.start + r, sim, &mut row);
            scatter(&row, &mut pa, r, MR);
        }
        let tile = s.plan.corpus_tile;
        let mut pb = vec![0f32; tile * d];
        let mut scores = vec![0f32; MR * tile];
        let mut res = Reservoirs::new(nq, k);
        let mut start = cs.start;
        while start < cs.end {
            let tn = tile.min(cs.end - start);
            let panels = tn.div_ceil(NR);
            for j in 0..tn {
                s.corpus.load_row(start + j, sim, &mut row);
                scatter(&row, &mut pb, j, NR);
            }
            if tn % NR != 0 {
                row.fill(0.0);
                for j in tn..panels * NR {
                    scatter(&row, &mut pb, j, NR);
                }
            }
            let ldc = panels * NR;
            for ip in 0..a_panels {
                let a = &pa[ip * d * MR..(ip + 1) * d * MR];
                strip(d, a, &pb, panels, &mut scores, ldc);
                for i in 0..MR.min(nq - ip * MR) {
                    if !res.scan(ip * MR + i, &scores[i * ldc..i * ldc + tn], start) {
                        return None;
                    }
                }
            }
            start += tn;
        }
        let mut out = TaskOut {
            q0: qs.start,
            ids: vec![0; nq * k],
            scores: vec![0.0; nq * k],
            len: vec![0; nq],
        };
        for q in 0..nq {
            let r = q * k..(q + 1) * k;
            out.len[q] = res.finish(q, &mut out.ids[r.clone()], &mut out.scores[r]);
        }
        Some(out)
    }
}

/// The score of query `q` with corpus row `c`, exactly as [`Search`] computes it.
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
/// Exactly the scores [`Search`] computes for the same pairs; an id outside the corpus or a
/// non-finite score is an error naming `arg`.
pub fn pair_scores(
    arg: &str,
    queries: Embeddings<'_>,
    corpus: Embeddings<'_>,
    similarity: Similarity,
    pairs: &Ragged<'_, i64>,
    threads: usize,
) -> Result<Vec<f32>> {
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
    if pairs.rows() != queries.rows() {
        return Err(CoreError::shape(
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

/// Which negatives are drawn from the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// The first `num_negatives` of the window (the hardest).
    Top,
    /// `num_negatives` of the window uniformly without replacement, from the query's own
    /// keyed stream; returned in window order (by score).
    Random,
}

/// What `range_min` / `range_max` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranks {
    /// Ranks among the candidates that survive the exclusions and filters
    /// (sentence-transformers).
    Filtered,
    /// Raw retrieval ranks, positives included, before anything is removed (NV-Retriever's
    /// "top-K shifted by N", FlagEmbedding's `range_for_sampling`).
    Raw,
}

/// How negatives are chosen from each query's ranked candidates.
///
/// For each query, in rank order, a candidate is dropped if it is padding (id `-1` or score
/// `-inf`), one of the query's positives (unless `include_positives`), the query's own corpus
/// row (`self_ids`; kept when it is also a positive and `include_positives` is set, as
/// sentence-transformers 6.3 keeps a query that is its own positive), or if it fails a filter, tested in this order with `pos` the query's **minimum** positive
/// score and all arithmetic in float32 as sentence-transformers does it:
/// `score + absolute_margin > pos`, `score > pos − |pos|·relative_margin`,
/// `score > max_score`, `score < min_score`. The window is then the survivors of ranks
/// `[range_min, range_max)` — counted among survivors ([`Ranks::Filtered`]) or among raw
/// candidates ([`Ranks::Raw`]) — and `num_negatives` are taken from it ([`Sampling`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SelectParams {
    pub num_negatives: usize,
    pub range_min: usize,
    pub range_max: usize,
    pub absolute_margin: Option<f32>,
    pub relative_margin: Option<f32>,
    pub max_score: Option<f32>,
    pub min_score: Option<f32>,
    pub sampling: Sampling,
    pub ranks: Ranks,
    pub include_positives: bool,
    pub seed: u64,
}

impl SelectParams {
    pub fn validate(&self) -> Result<()> {
        if self.num_negatives == 0 {
            return Err(CoreError::invalid("num_negatives", "must be at least 1"));
        }
        if self.range_min >= self.range_max {
            return Err(CoreError::invalid(
                "range_min",
                format!(
                    "must be smaller than range_max, got range_min={} and range_max={}",
                    self.range_min, self.range_max
                ),
            ));
        }
        if self.num_negatives > self.range_max - self.range_min {
            return Err(CoreError::invalid(
                "num_negatives",
                format!(
                    "is {} but the window range_min={}..range_max={} holds only {}",
                    self.num_negatives,
                    self.range_min,
                    self.range_max,
                    self.range_max - self.range_min
                ),
            ));
        }
        for (arg, v) in [
            ("absolute_margin", self.absolute_margin),
            ("relative_margin", self.relative_margin),
            ("max_score", self.max_score),
            ("min_score", self.min_score),
        ] {
            if let Some(v) = v
                && !v.is_finite()
            {
                return Err(CoreError::invalid(
                    arg,
                    format!("must be a finite number, got {v}"),
                ));
            }
        }
        Ok(())
    }

    fn margins(&self) -> bool {
        self.absolute_margin.is_some() || self.relative_margin.is_some()
    }
}

/// Each query's candidates: `rows × depth` ids and scores, ranked best first; id `-1` /
/// score `-inf` pad short lists.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'a> {
    pub ids: &'a [i64],
    pub scores: &'a [f32],
    pub depth: usize,
}

/// How many candidates each rule removed (each candidate counted once, by the first rule
/// that removed it), over every retrieved candidate of every query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub positives: u64,
    pub self_ids: u64,
    pub absolute_margin: u64,
    pub relative_margin: u64,
    pub max_score: u64,
    pub min_score: u64,
}

impl Removed {
    fn add(&mut self, o: &Removed) {
        self.positives += o.positives;
        self.self_ids += o.self_ids;
        self.absolute_margin += o.absolute_margin;
        self.relative_margin += o.relative_margin;
        self.max_score += o.max_score;
        self.min_score += o.min_score;
    }
}

/// The chosen negatives: `rows × num_negatives` ids (`-1` where fewer were found) and scores
/// (`-inf` there), and what the rules removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub num_negatives: usize,
    pub ids: Vec<i64>,
    pub scores: Vec<f32>,
    pub removed: Removed,
}

/// The inputs of [`select`] besides the parameters.
#[derive(Debug, Clone, Copy)]
pub struct SelectInputs<'a> {
    pub candidates: Candidates<'a>,
    /// The corpus ids of each query's positives (`None`: no positives).
    pub positives: Option<Ragged<'a, i64>>,
    /// One score per positive, aligned with `positives.values`.
    pub positive_scores: &'a [f32],
    /// Each query's own corpus id, or `-1` (`None`: no self-exclusion).
    pub self_ids: Option<&'a [i64]>,
    /// The key of each query's random stream (its global id).
    pub keys: &'a [u64],
    /// Corpus rows (ids must lie in `[0, corpus_rows)`).
    pub corpus_rows: usize,
}

/// Chooses each query's negatives from its candidates (see [`SelectParams`]). The random
/// stream of query `q` is `(seed, 0, PURPOSE, keys[q])`, so results do not depend on the
/// thread count, the tiling of the search, or which other queries are in the call.
pub fn select(
    params: &SelectParams,
    inputs: &SelectInputs<'_>,
    threads: usize,
) -> Result<Selection> {
    params.validate()?;
    let c = inputs.candidates;
    let rows = inputs.keys.len();
    if c.depth == 0 {
        return Err(CoreError::shape(
            "candidates",
            "must have at least one column",
        ));
    }
    if c.ids.len() != rows * c.depth || c.scores.len() != rows * c.depth {
        return Err(CoreError::shape(
            "candidates",
            format!(
                "ids/scores have {}/{} values, not queries × depth = {rows} × {}",
                c.ids.len(),
                c.scores.len(),
                c.depth
            ),
        ));
    }
    let n = inputs.corpus_rows as i64;
    if let Some(i) = c.ids.iter().position(|&id| id < -1 || id >= n) {
        return Err(CoreError::invalid(
            "candidates",
            format!(
                "id {} at [{}][{}] is not a corpus row (the corpus has {n} rows)",
                c.ids[i],
                i / c.depth,
                i % c.depth
            ),
        ));
    }
    if let Some(i) = c
        .scores
        .iter()
        .position(|s| s.is_nan() || *s == f32::INFINITY)
    {
        return Err(CoreError::invalid(
            "candidates",
            format!(
                "score {} at [{}][{}] is not a number",
                c.scores[i],
                i / c.depth,
                i % c.depth
            ),
        ));
    }
    match &inputs.positives {
        Some(p) => {
            if p.rows() != rows {
                return Err(CoreError::shape(
                    "positives",
                    format!("has {} rows for {rows} queries", p.rows()),
                ));
            }
            check_corpus_ids("positives", p, inputs.corpus_rows)?;
            if let Some(r) = (0..rows).find(|&r| p.row_len(r) == 0) {
                return Err(CoreError::invalid(
                    "positives",
                    format!("query {r} has no positives (every query needs at least one)"),
                ));
            }
            if inputs.positive_scores.len() != p.values.len() {
                return Err(CoreError::shape(
                    "positive_scores",
                    format!(
                        "has {} values for {} positives",
                        inputs.positive_scores.len(),
                        p.values.len()
                    ),
                ));
            }
            if let Some(i) = inputs.positive_scores.iter().position(|s| !s.is_finite()) {
                return Err(CoreError::invalid(
                    "positive_scores",
                    format!("score {} at {i} is not finite", inputs.positive_scores[i]),
                ));
            }
        }
        None if params.margins() => {
            return Err(CoreError::invalid(
                "positives",
                "absolute_margin and relative_margin are measured from the positives' scores; \
                 give positives",
            ));
        }
        None => {}
    }
    if let Some(s) = inputs.self_ids {
        if s.len() != rows {
            return Err(CoreError::shape(
                "self_ids",
                format!("has {} entries for {rows} queries", s.len()),
            ));
        }
        if let Some(i) = s.iter().position(|&id| id < -1 || id >= n) {
            return Err(CoreError::invalid(
                "self_ids",
                format!(
                    "[{i}] = {} is not a corpus row (the corpus has {n} rows)",
                    s[i]
                ),
            ));
        }
    }

    const ROWS: usize = 512;
    let k = params.num_negatives;
    let chunks = rows.div_ceil(ROWS);
    let mut parts: Vec<(Vec<i64>, Vec<f32>, Removed)> = vec![Default::default(); chunks];
    let threads = crate::parallel::threads_for(threads, rows * c.depth, 65_536);
    let streams = Streams::new(params.seed, 0, PURPOSE);
    for_each_mut(threads, &mut parts, |ci, (ids, scores, removed)| {
        let span = ci * ROWS..((ci + 1) * ROWS).min(rows);
        ids.resize(span.len() * k, -1);
        scores.resize(span.len() * k, f32::NEG_INFINITY);
        let mut window = Vec::with_capacity(params.range_max);
        let mut sorted_pos = Vec::new();
        let mut order = Vec::new();
        for (r, q) in span.enumerate() {
            select_row(
                params,
                inputs,
                &streams,
                q,
                &mut window,
                &mut sorted_pos,
                &mut order,
                removed,
                &mut ids[r * k..(r + 1) * k],
                &mut scores[r * k..(r + 1) * k],
            );
        }
    })?;
    let mut out = Selection {
        num_negatives: k,
        ids: Vec::with_capacity(rows * k),
        scores: Vec::with_capacity(rows * k),
        removed: Removed::default(),
    };
    for (ids, scores, removed) in &parts {
        out.ids.extend_from_slice(ids);
        out.scores.extend_from_slice(scores);
        out.removed.add(removed);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn select_row(
    p: &SelectParams,
    inputs: &SelectInputs<'_>,
    streams: &Streams,
    q: usize,
    window: &mut Vec<(i64, f32)>,
    sorted_pos: &mut Vec<i64>,
    order: &mut Vec<usize>,
    removed: &mut Removed,
    out_ids: &mut [i64],
    out_scores: &mut [f32],
) {
    let c = inputs.candidates;
    let ids = &c.ids[q * c.depth..(q + 1) * c.depth];
    let scores = &c.scores[q * c.depth..(q + 1) * c.depth];
    let (pos, pos_scores): (&[i64], &[f32]) = match &inputs.positives {
        Some(pr) => (
            pr.row(q),
            &inputs.positive_scores[pr.offsets[q]..pr.offsets[q + 1]],
        ),
        None => (&[], &[]),
    };
    let many = pos.len() > 16;
    if many {
        sorted_pos.clear();
        sorted_pos.extend_from_slice(pos);
        sorted_pos.sort_unstable();
    }
    let is_pos = |id: i64| {
        if many {
            sorted_pos.binary_search(&id).is_ok()
        } else {
            pos.contains(&id)
        }
    };
    let pmin = pos_scores.iter().copied().fold(f32::INFINITY, f32::min);
    let rel_thr = p.relative_margin.map(|m| pmin - pmin.abs() * m);
    let self_id = inputs.self_ids.map_or(-1, |s| s[q]);
    let (first, last) = match p.ranks {
        Ranks::Raw => (p.range_min.min(c.depth), p.range_max.min(c.depth)),
        Ranks::Filtered => (0, c.depth),
    };
    let keep = match p.ranks {
        Ranks::Raw => usize::MAX,
        Ranks::Filtered => p.range_max,
    };
    window.clear();
    for r in first..last {
        let (id, s) = (ids[r], scores[r]);
        if id < 0 || s == f32::NEG_INFINITY {
            continue;
        }
        if !p.include_positives && is_pos(id) {
            removed.positives += 1;
        } else if id == self_id && !(p.include_positives && is_pos(id)) {
            removed.self_ids += 1;
        } else if p.absolute_margin.is_some_and(|m| s + m > pmin) {
            removed.absolute_margin += 1;
        } else if rel_thr.is_some_and(|t| s > t) {
            removed.relative_margin += 1;
        } else if p.max_score.is_some_and(|m| s > m) {
            removed.max_score += 1;
        } else if p.min_score.is_some_and(|m| s < m) {
            removed.min_score += 1;
        } else if window.len() < keep {
            window.push((id, s));
        }
    }
    let skip = match p.ranks {
        Ranks::Raw => 0,
        Ranks::Filtered => p.range_min.min(window.len()),
    };
    let window = &window[skip..];
    let k = p.num_negatives;
    order.clear();
    order.extend(0..window.len());
    if p.sampling == Sampling::Random && window.len() > k {
        // Partial Fisher–Yates over window positions: `order[..k]` is a uniform k-subset
        // (one `below` draw each); then back in window order.
        let mut rng = streams.row(&RowKeys::Samples(inputs.keys), q);
        let w = window.len();
        for i in 0..k {
            let j = i + rng.below((w - i) as u64) as usize;
            order.swap(i, j);
        }
        order[..k].sort_unstable();
    }
    for (i, &w) in order.iter().take(k).enumerate() {
        out_ids[i] = window[w].0;
        out_scores[i] = window[w].1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::from_seed(seed);
        (0..len).map(|_| r.next_f64() as f32 - 0.5).collect()
    }

    fn brute(q: &Embeddings<'_>, c: &Embeddings<'_>, sim: Similarity, k: usize) -> TopK {
        let mut out = TopK::empty(q.rows(), k);
        for i in 0..q.rows() {
            let mut all: Vec<Entry> = (0..c.rows())
                .map(|j| Entry {
                    score: score(q, c, sim, i, j),
                    id: j as u64,
                })
                .collect();
            all.sort_by(rank);
            for (slot, e) in all.iter().take(k).enumerate() {
                out.ids[i * k + slot] = e.id as i64;
                out.scores[i * k + slot] = e.score;
            }
            out.len[i] = k;
        }
        out
    }

    #[test]
    fn exact_for_any_tiling_thread_count_and_isa() {
        let (nq, n, d) = (37usize, 301usize, 19usize);
        let qv = random(nq * d, 1);
        let mut cv = random(n * d, 2);
        // Planted exact ties: rows 5, 77 and 200 are the same vector.
        let row5: Vec<f32> = cv[5 * d..6 * d].to_vec();
        cv[77 * d..78 * d].copy_from_slice(&row5);
        cv[200 * d..201 * d].copy_from_slice(&row5);
        let q = Embeddings::new("queries", Values::F32(&qv), nq, d).unwrap();
        let c = Embeddings::new("corpus", Values::F32(&cv), n, d).unwrap();
        for sim in [Similarity::Dot, Similarity::Cosine] {
            for k in [1usize, 7, 100, n] {
                let want = brute(&q, &c, sim, k);
                for &isa in Isa::available() {
                    for (qb, tile, span) in [
                        (None, None, None),
                        (Some(1), Some(1), Some(1)),
                        (Some(13), Some(40), Some(100)),
                        (Some(64), Some(512), None),
                    ] {
                        for threads in [1usize, 3] {
                            let opts = SearchOptions {
                                isa: Some(isa),
                                query_block: qb,
                                corpus_tile: tile,
                                span,
                                ..SearchOptions::new(k, sim)
                            };
                            let s = Search::new(q, c, &opts, threads).unwrap();
                            let got = s.run_all(threads).unwrap();
                            assert_eq!(got, want, "{sim:?} k={k} {} {:?}", isa.name(), s.plan());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ties_rank_lower_ids_first() {
        let d = 4;
        let cv = vec![1.0f32; 10 * d];
        let qv = vec![0.5f32; d];
        let q = Embeddings::new("queries", Values::F32(&qv), 1, d).unwrap();
        let c = Embeddings::new("corpus", Values::F32(&cv), 10, d).unwrap();
        let opts = SearchOptions {
            corpus_tile: Some(1),
            span: Some(3),
            ..SearchOptions::new(4, Similarity::Dot)
        };
        let got = Search::new(q, c, &opts, 2).unwrap().run_all(2).unwrap();
        assert_eq!(got.ids, [0, 1, 2, 3]);
    }

    #[test]
    fn float16_storage_equals_its_float32_widening() {
        let (nq, n, d) = (5usize, 50usize, 9usize);
        let bits: Vec<u16> = (0..(nq + n) * d)
            .map(|i| (0x3000 + ((i * 7919) % 0x0c00) as u16) | if i % 3 == 0 { 0x8000 } else { 0 })
            .collect();
        let widened: Vec<f32> = bits.iter().map(|&h| f16_to_f32(h)).collect();
        let (qh, ch) = bits.split_at(nq * d);
        let (qf, cf) = widened.split_at(nq * d);
        let run = |q: Embeddings<'_>, c: Embeddings<'_>| {
            Search::new(q, c, &SearchOptions::new(6, Similarity::Cosine), 1)
                .unwrap()
                .run_all(1)
                .unwrap()
        };
        let half = run(
            Embeddings::new("queries", Values::F16(qh), nq, d).unwrap(),
            Embeddings::new("corpus", Values::F16(ch), n, d).unwrap(),
        );
        let single = run(
            Embeddings::new("queries", Values::F32(qf), nq, d).unwrap(),
            Embeddings::new("corpus", Values::F32(cf), n, d).unwrap(),
        );
        assert_eq!(half, single);
    }

    #[test]
    fn bad_shapes_and_values_are_errors() {
        let v = random(40, 3);
        let q = Embeddings::new("queries", Values::F32(&v[..8]), 2, 4).unwrap();
        let c = Embeddings::new("corpus", Values::F32(&v), 10, 4).unwrap();
        let opts = SearchOptions::new(11, Similarity::Dot);
        let e = Search::new(q, c, &opts, 1).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("k: is 11 but the corpus has only 10 rows"),
            "{e}"
        );
        let e = Search::new(q, c, &SearchOptions::new(0, Similarity::Dot), 1).unwrap_err();
        assert!(e.to_string().starts_with("k:"), "{e}");
        assert!(Embeddings::new("corpus", Values::F32(&v), 9, 4).is_err());
        assert!(Embeddings::new("corpus", Values::F32(&[]), 0, 0).is_err());
        let c3 = Embeddings::new("corpus", Values::F32(&v[..39]), 13, 3).unwrap();
        let e = Search::new(q, c3, &SearchOptions::new(1, Similarity::Dot), 1).unwrap_err();
        assert!(
            e.to_string()
                .contains("dimension 4 but corpus has dimension 3"),
            "{e}"
        );

        let mut bad = v.clone();
        bad[4 * 6 + 2] = f32::NAN;
        let cb = Embeddings::new("corpus", Values::F32(&bad), 10, 4).unwrap();
        for sim in [Similarity::Dot, Similarity::Cosine] {
            let s = Search::new(q, cb, &SearchOptions::new(3, sim), 2).unwrap();
            let e = s.run_all(2).unwrap_err();
            assert_eq!(
                e.to_string(),
                "corpus: row 6 has a non-finite value (NaN) at column 2"
            );
        }
        let huge = vec![3e30f32; 40];
        let ch = Embeddings::new("corpus", Values::F32(&huge), 10, 4).unwrap();
        let qh = Embeddings::new("queries", Values::F32(&huge[..8]), 2, 4).unwrap();
        let e = Search::new(qh, ch, &SearchOptions::new(3, Similarity::Dot), 1)
            .unwrap()
            .run_all(1)
            .unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
        // Cosine normalises in float64 first: the same vectors are fine.
        let ok = Search::new(qh, ch, &SearchOptions::new(3, Similarity::Cosine), 1)
            .unwrap()
            .run_all(1)
            .unwrap();
        assert!(ok.scores.iter().all(|&s| (s - 1.0).abs() < 1e-6));
    }

    fn params(n: usize, lo: usize, hi: usize) -> SelectParams {
        SelectParams {
            num_negatives: n,
            range_min: lo,
            range_max: hi,
            absolute_margin: None,
            relative_margin: None,
            max_score: None,
            min_score: None,
            sampling: Sampling::Top,
            ranks: Ranks::Filtered,
            include_positives: false,
            seed: 0,
        }
    }

    #[test]
    fn selection_semantics() {
        // One query, candidates 0..8 with falling scores; positive 2 (score 0.5).
        let ids: Vec<i64> = (0..8).collect();
        let scores = [0.9f32, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2];
        let offsets = [0usize, 1];
        let pos_ids = [2i64];
        let positives = Ragged::new("positives", &pos_ids, &offsets).unwrap();
        let inputs = SelectInputs {
            candidates: Candidates {
                ids: &ids,
                scores: &scores,
                depth: 8,
            },
            positives: Some(positives),
            positive_scores: &[0.5],
            self_ids: Some(&[0]),
            keys: &[0],
            corpus_rows: 8,
        };
        let run = |p: &SelectParams| select(p, &inputs, 1).unwrap();
        // Positive 2 and self 0 removed; range_min counts survivors: [1, 3, 4, 5, 6, 7] → skip 1.
        let s = run(&params(3, 1, 8));
        assert_eq!(s.ids, [3, 4, 5]);
        assert_eq!(s.removed.positives, 1);
        assert_eq!(s.removed.self_ids, 1);
        // include_positives keeps the positive; the self row stays excluded unless it is
        // itself a positive (sentence-transformers 6.3: a query that is its own positive).
        let kept = SelectParams {
            include_positives: true,
            ..params(3, 0, 8)
        };
        assert_eq!(run(&kept).ids, [1, 2, 3]);
        let own_positive = SelectInputs {
            self_ids: Some(&[2]),
            ..inputs
        };
        let s = select(&kept, &own_positive, 1).unwrap();
        assert_eq!(s.ids, [0, 1, 2]);
        assert_eq!(s.removed.self_ids, 0);
        // Raw ranks: window = raw ranks 1..4 = [1, 2, 3] minus the positive.
        let s = run(&SelectParams {
            ranks: Ranks::Raw,
            ..params(2, 1, 4)
        });
        assert_eq!(s.ids, [1, 3]);
        // Absolute margin 0.15 from pos 0.5: keep score < 0.35 (score + m > pos dropped).
        let s = run(&SelectParams {
            absolute_margin: Some(0.15),
            ..params(3, 0, 8)
        });
        assert_eq!(s.ids, [6, 7, -1]);
        assert_eq!(s.scores[2], f32::NEG_INFINITY);
        // Relative margin is sign-safe: pos −0.5, m = 0.2 → threshold −0.6.
        let neg_scores = [-0.1f32, -0.2, -0.3, -0.4, -0.5, -0.55, -0.65, -0.7];
        let inputs2 = SelectInputs {
            candidates: Candidates {
                ids: &ids,
                scores: &neg_scores,
                depth: 8,
            },
            positive_scores: &[-0.5],
            self_ids: None,
            ..inputs
        };
        let s = select(
            &SelectParams {
                relative_margin: Some(0.2),
                ..params(2, 0, 8)
            },
            &inputs2,
            1,
        )
        .unwrap();
        assert_eq!(s.ids, [6, 7]);
        // max/min score window.
        let s = run(&SelectParams {
            max_score: Some(0.65),
            min_score: Some(0.35),
            ..params(3, 0, 8)
        });
        assert_eq!(s.ids, [3, 4, 5]);
        // Random: a subset of the window, in window order, stable for the key.
        let p = SelectParams {
            sampling: Sampling::Random,
            seed: 9,
            ..params(2, 0, 8)
        };
        let a = run(&p);
        assert_eq!(a, run(&p));
        assert!(a.ids[0] < a.ids[1] && a.ids.iter().all(|i| [1, 3, 4, 5, 6, 7].contains(i)));
    }

    #[test]
    fn selection_errors_name_the_argument() {
        let ids = [0i64, 1];
        let scores = [0.5f32, 0.4];
        let inputs = SelectInputs {
            candidates: Candidates {
                ids: &ids,
                scores: &scores,
                depth: 2,
            },
            positives: None,
            positive_scores: &[],
            self_ids: None,
            keys: &[0],
            corpus_rows: 2,
        };
        let err = |p: &SelectParams, i: &SelectInputs<'_>| select(p, i, 1).unwrap_err().to_string();
        assert!(err(&params(0, 0, 2), &inputs).starts_with("num_negatives"));
        assert!(err(&params(1, 2, 2), &inputs).starts_with("range_min"));
        assert!(err(&params(3, 0, 2), &inputs).starts_with("num_negatives"));
        let margin = SelectParams {
            absolute_margin: Some(0.1),
            ..params(1, 0, 2)
        };
        assert!(err(&margin, &inputs).starts_with("positives"));
        let offsets = [0usize, 0];
        let empty = Ragged::new("positives", &[], &offsets).unwrap();
        let no_pos = SelectInputs {
            positives: Some(empty),
            ..inputs
        };
        assert!(err(&params(1, 0, 2), &no_pos).contains("query 0 has no positives"));
        let bad_ids = [0i64, 5];
        let bad = SelectInputs {
            candidates: Candidates {
                ids: &bad_ids,
                ..inputs.candidates
            },
            ..inputs
        };
        assert!(err(&params(1, 0, 2), &bad).starts_with("candidates: id 5"));
    }
}
