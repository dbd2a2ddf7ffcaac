//! Exact top-`k` search: the task grid, the per-query reservoirs and the merge (see the
//! [module documentation](super)).

use std::ops::Range;

use super::kernel::{Isa, StripFn, Tiled, dispatch};
use super::{Embeddings, Similarity, check_same_dim, non_finite};
use crate::parallel::{for_each_mut, resolve_threads};
use crate::{CoreError, Result};

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

impl Plan {
    /// The grid for `[queries, corpus rows, dim]` on `threads` threads with the kernel tile
    /// of `isa`: the sizes `options` give (rounded up to the tile), the others chosen.
    fn new(
        options: &SearchOptions,
        isa: Isa,
        [q, n, d]: [usize; 3],
        threads: usize,
    ) -> Result<Self> {
        let (mr, nr) = isa.tile();
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
        let span = match check("span", options.span)? {
            Some(s) => round_up(s, corpus_tile),
            None => {
                let per_task = (TASK_FMAS / (query_block.min(q.max(1)) * d) as f64) as usize;
                let mut span = round_up(per_task.max(corpus_tile), corpus_tile);
                // Enough tasks for every thread when there are few query blocks.
                let spans_wanted = threads.div_ceil(q.div_ceil(query_block).max(1));
                if n.div_ceil(span) < spans_wanted {
                    span = round_up(n.div_ceil(spans_wanted), corpus_tile);
                }
                span.min(round_up(n, corpus_tile))
            }
        };
        Ok(Self {
            query_block,
            corpus_tile,
            span,
        })
    }
}

/// `x` rounded up to a multiple of `m` (at least `m`).
fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m).max(1) * m
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
        check_same_dim(&queries, &corpus)?;
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
        let (q, d) = (queries.rows(), corpus.dim());
        let plan = Plan::new(options, isa, [q, n, d], resolve_threads(threads))?;
        Ok(Self {
            queries,
            corpus,
            k,
            similarity: options.similarity,
            isa,
            plan,
            query_blocks: q.div_ceil(plan.query_block),
            spans: n.div_ceil(plan.span),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mining::kernel::f16_to_f32;
    use crate::mining::{Values, score};
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
}
