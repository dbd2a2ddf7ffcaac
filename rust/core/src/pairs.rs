//! Sentence-pair instances for next-sentence (BERT NSP) and sentence-order (ALBERT SOP)
//! prediction, built from a token corpus in CSR layout (flat ids, sentence offsets in tokens,
//! document offsets in sentences).
//!
//! [`build_index`] walks every document as Google BERT's `create_instances_from_document`
//! does — a target length (short with probability `short_seq_prob`, drawn once per document
//! and pass), sentences accumulated into a chunk until it reaches the target, a random split
//! point `a_end`, B from a random other document (NSP, with the unused sentences put back) or
//! the true continuation (swapped with probability ½ for SOP), and `truncate_seq_pair`
//! trimming the longer side from the front or back at random. Each document draws from its own
//! stream `(seed, epoch, document)`, so documents are processed in parallel and the result
//! does not depend on the thread count; each thread also walks several documents at once, as
//! coroutines, so that the cache misses of their random Bs overlap (`walk_interleaved`),
//! which changes the speed and not the draws. The instances are then shuffled with the stream
//! `(seed, epoch)`. Every instance is stored as two token ranges and a label — a few dozen
//! bytes, far less than its tokens — and [`materialize`] turns any of them into
//! `[CLS] A [SEP] B [SEP]` on demand.
//!
//! Deliberate departures from the reference, each tested:
//! - NSP's random document is drawn uniformly among the *other* documents (Google retries up
//!   to ten times and, with a single document, silently pairs a document with itself yet
//!   labels it "random"). With one document, a chunk that would go random uses its actual
//!   continuation instead (or is dropped when it has a single sentence).
//! - SOP drops single-sentence chunks (ALBERT pairs them with a random document and labels
//!   them "swapped", which quietly leaks NSP into SOP).
//! - Pairs in which A or B would be empty (empty sentences) are dropped.
//!
//! The first two are rules ([`PairRules`]): the `"google-bert"` and `"albert"` recipes
//! ([`crate::recipes`]) follow the reference instead (up to ten uniform draws among all the
//! documents; SOP's single-sentence chunks paired with a random document and labelled
//! "swapped").

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::batch::{OutId, TokenId};
use crate::parallel::{for_each_mut, threads_for};
use crate::rng::{Chance, Rng, RowKeys, Streams, purpose};
use crate::{CoreError, Result, check_probability};

/// Which pair objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// BERT next-sentence prediction: label 1 = B is a random sentence run.
    Nsp,
    /// ALBERT sentence-order prediction: label 1 = A and B swapped.
    Sop,
}

impl Task {
    pub fn parse(arg: &str, s: &str) -> Result<Self> {
        match s {
            "nsp" => Ok(Task::Nsp),
            "sop" => Ok(Task::Sop),
            other => Err(CoreError::invalid(
                arg,
                format!("must be 'nsp' or 'sop', got {other:?}"),
            )),
        }
    }
}

/// How a random B's document is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RandomDocument {
    /// Uniformly among the other documents (ours); with a single document there is none.
    #[default]
    Other,
    /// Google BERT's: up to ten uniform draws among all documents, stopping at the first other
    /// one (the last draw is kept, so a one-document corpus pairs a document with itself).
    GoogleRetries,
}

/// What SOP does with a chunk of a single sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SingleSentenceSop {
    /// Drops it (ours).
    #[default]
    Drop,
    /// ALBERT's: B is a random document's sentences, as NSP's random next, labelled 1
    /// ("swapped").
    RandomDocument,
}

/// The rules a recipe fixes for NSP/SOP (see [`crate::recipes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PairRules {
    pub random_document: RandomDocument,
    pub sop_single_sentence: SingleSentenceSop,
}

/// Parameters of the instance builder (Google BERT's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairParams {
    pub task: Task,
    /// Longest `[CLS] A [SEP] B [SEP]` (≥ 5).
    pub max_seq_length: usize,
    pub short_seq_prob: f64,
    /// NSP: chance that B is a random sentence run (0.5).
    pub random_next_prob: f64,
    /// SOP: chance that A and B are swapped (0.5).
    pub swap_prob: f64,
    /// The recipe's rules (ours by default).
    pub rules: PairRules,
}

impl PairParams {
    pub fn new(task: Task) -> Self {
        Self {
            task,
            max_seq_length: 128,
            short_seq_prob: 0.1,
            random_next_prob: 0.5,
            swap_prob: 0.5,
            rules: PairRules::default(),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.max_seq_length < 5 {
            return Err(CoreError::invalid(
                "max_seq_length",
                format!(
                    "must be at least 5 ([CLS] A [SEP] B [SEP] with one token each), got {}",
                    self.max_seq_length
                ),
            ));
        }
        check_probability("short_seq_prob", self.short_seq_prob)?;
        check_probability("random_next_prob", self.random_next_prob)?;
        check_probability("swap_prob", self.swap_prob)?;
        Ok(())
    }
}

/// A corpus as the kernels read it (validated on construction).
#[derive(Debug, Clone, Copy)]
pub struct Corpus<'a, T> {
    pub ids: &'a [T],
    /// Token offsets of sentences, `num_sentences + 1` entries.
    pub sentence_offsets: &'a [i64],
    /// Sentence offsets of documents, `num_documents + 1` entries.
    pub document_offsets: &'a [i64],
}

fn check_offsets(arg: &str, offsets: &[i64], end: usize) -> Result<()> {
    if offsets.first() != Some(&0) {
        return Err(CoreError::shape(arg, "must start at 0"));
    }
    if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(CoreError::shape(
            arg,
            format!("must be non-decreasing (decreases after index {i})"),
        ));
    }
    if offsets[offsets.len() - 1] != end as i64 {
        return Err(CoreError::shape(
            arg,
            format!("must end at {end}, ends at {}", offsets[offsets.len() - 1]),
        ));
    }
    Ok(())
}

impl<'a, T> Corpus<'a, T> {
    pub fn new(
        ids: &'a [T],
        sentence_offsets: &'a [i64],
        document_offsets: &'a [i64],
    ) -> Result<Self> {
        check_offsets("sentence_offsets", sentence_offsets, ids.len())?;
        check_offsets(
            "document_offsets",
            document_offsets,
            sentence_offsets.len() - 1,
        )?;
        Ok(Self {
            ids,
            sentence_offsets,
            document_offsets,
        })
    }

    pub fn num_documents(&self) -> usize {
        self.document_offsets.len() - 1
    }

    fn sentences(&self, d: usize) -> std::ops::Range<usize> {
        self.document_offsets[d] as usize..self.document_offsets[d + 1] as usize
    }

    fn sentence_len(&self, s: usize) -> usize {
        (self.sentence_offsets[s + 1] - self.sentence_offsets[s]) as usize
    }

    /// Token range of sentences `first..end` (contiguous by construction).
    fn span(&self, first: usize, end: usize) -> (u64, u64) {
        (
            self.sentence_offsets[first] as u64,
            self.sentence_offsets[end] as u64,
        )
    }
}

/// Every instance of one pass: token ranges `[lo, hi)` of A and B, and the label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairIndex {
    pub a: Vec<[u64; 2]>,
    pub b: Vec<[u64; 2]>,
    pub label: Vec<u8>,
}

impl PairIndex {
    pub fn len(&self) -> usize {
        self.label.len()
    }

    pub fn is_empty(&self) -> bool {
        self.label.is_empty()
    }
}

/// One instance: token ranges of A and B, and the label.
type Instance = ([u64; 2], [u64; 2], u8);

/// Materialised instances: flat ids, flat token types, CSR offsets, labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairRows {
    pub ids: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub offsets: Vec<usize>,
    pub labels: Vec<i64>,
}

pub const PURPOSE: u64 = purpose("pairs");
const ORDER: u64 = purpose("pairs-order");

/// Documents per block of the parallel walk. Each block's instances are built in parallel and
/// appended to the index before the next block starts, so the walk holds the index and one
/// block — never a second copy of every instance.
const DOC_BLOCK: usize = 1 << 14;
/// Documents per task of the parallel walk (a block holds several tasks).
const WALK_GRAIN: usize = 1 << 10;
/// Documents one thread walks at once (see [`walk_interleaved`]).
const INTERLEAVE: usize = 16;
/// Sentences up to which a corpus's offsets (8 bytes a sentence: 512 KiB) stay in a core's
/// cache: its random Bs do not miss, so the walks run one after the other, without pausing
/// (pausing and resuming them costs more than it saves there: 0.34 against 0.45 ms for a
/// corpus of 18,000 sentences; the instances are the same either way).
const SMALL_SENTENCES: usize = 1 << 16;
/// Steps of the shuffle whose random positions are drawn, then read, ahead of their swaps.
const SHUFFLE_AHEAD: usize = 64;
/// Instances per task of the parallel gathers that apply the shuffle.
const GATHER_GRAIN: usize = 1 << 16;

/// Builds every instance of pass `epoch` (see the module documentation).
///
/// Memory: the instances in walk order (17 bytes each: each side's start and length packed
/// into one `u64` — a `u128` past 2^57 tokens at the default length — and the label), the
/// shuffle's permutation (4 bytes an instance, 8 past 2^32 instances) and the index being
/// gathered from them (33 bytes), each column of the walk freed once gathered: at most 45 bytes
/// an instance (B's gather: 8 + 4 + 33). The ids are never read (only their number), so `T`
/// may be any type, `()` included.
pub fn build_index<T: Sync>(
    corpus: &Corpus<'_, T>,
    params: &PairParams,
    seed: u64,
    epoch: u64,
    threads: usize,
) -> Result<PairIndex> {
    params.validate()?;
    if u32::try_from(params.max_seq_length).is_err() {
        return Err(CoreError::invalid(
            "max_seq_length",
            format!("must be below 2^32, got {}", params.max_seq_length),
        ));
    }
    let len_bits = len_bits(params.max_seq_length - 3);
    if (corpus.ids.len() as u64) >> (64 - len_bits) == 0 {
        build::<T, u64>(corpus, params, seed, epoch, threads, walk_width(corpus))
    } else {
        build::<T, u128>(corpus, params, seed, epoch, threads, walk_width(corpus))
    }
}

/// Documents a thread walks at once in `corpus`: one on a small corpus, else [`INTERLEAVE`].
fn walk_width<T>(corpus: &Corpus<'_, T>) -> usize {
    if corpus.sentence_offsets.len() <= SMALL_SENTENCES {
        1
    } else {
        INTERLEAVE
    }
}

/// [`build_index`] with the walked sides stored as `S`, walking `width` documents at once.
fn build<T: Sync, S: Side>(
    corpus: &Corpus<'_, T>,
    params: &PairParams,
    seed: u64,
    epoch: u64,
    threads: usize,
    width: usize,
) -> Result<PairIndex> {
    let n_docs = corpus.num_documents();
    let streams = Streams::new(seed, epoch, PURPOSE);
    let threads = threads_for(threads, corpus.ids.len(), 256 * 1024);
    let mut walked = Walked::<S>::new(len_bits(params.max_seq_length - 3));
    let mut block: Vec<Vec<Instance>> = Vec::new();
    for lo in (0..n_docs).step_by(DOC_BLOCK) {
        let hi = (lo + DOC_BLOCK).min(n_docs);
        block.clear();
        block.resize(hi - lo, Vec::new());
        let mut tasks: Vec<&mut [Vec<Instance>]> = block.chunks_mut(WALK_GRAIN).collect();
        for_each_mut(threads, &mut tasks, |t, out| {
            let first = lo + t * WALK_GRAIN;
            walk_interleaved(corpus, params, &streams, first, out, width);
        })?;
        walked.reserve(block.iter().map(Vec::len).sum());
        for (a, b, l) in block.drain(..).flatten() {
            walked.push(a, b, l);
        }
    }
    let total = walked.label.len();
    if u32::try_from(total).is_ok() {
        walked.shuffled(&shuffle_order::<u32>(total, seed, epoch), threads)
    } else {
        walked.shuffled(&shuffle_order::<usize>(total, seed, epoch), threads)
    }
}

/// Bits for lengths up to `max_len` (at least 1).
fn len_bits(max_len: usize) -> u32 {
    (usize::BITS - max_len.leading_zeros()).max(1)
}

/// A side of a walked instance, its start and length in one integer: `start << len_bits |
/// length`, `len_bits` enough for the longest side (`max_seq_length - 3`). A `u64` holds it
/// while the corpus has fewer than `2^(64 - len_bits)` tokens (2^57 at the default length),
/// else a `u128` (a start below 2^64 and a length below 2^32 always fit).
trait Side: Copy + Send + Sync {
    fn pack(lo: u64, len: u64, len_bits: u32) -> Self;
    /// `[start, end)`.
    fn range(self, len_bits: u32) -> [u64; 2];
}

impl Side for u64 {
    fn pack(lo: u64, len: u64, len_bits: u32) -> Self {
        debug_assert!(len >> len_bits == 0 && lo >> (64 - len_bits) == 0);
        lo << len_bits | len
    }
    fn range(self, len_bits: u32) -> [u64; 2] {
        let lo = self >> len_bits;
        [lo, lo + (self & ((1 << len_bits) - 1))]
    }
}

impl Side for u128 {
    fn pack(lo: u64, len: u64, len_bits: u32) -> Self {
        debug_assert!(len >> len_bits == 0);
        u128::from(lo) << len_bits | u128::from(len)
    }
    fn range(self, len_bits: u32) -> [u64; 2] {
        let lo = (self >> len_bits) as u64;
        [lo, lo + (self as u64 & ((1 << len_bits) - 1))]
    }
}

/// The instances in walk order, by columns: each side packed (see [`Side`]), and the labels.
struct Walked<S> {
    a: Vec<S>,
    b: Vec<S>,
    label: Vec<u8>,
    len_bits: u32,
}

impl<S: Side> Walked<S> {
    fn new(len_bits: u32) -> Self {
        Self {
            a: Vec::new(),
            b: Vec::new(),
            label: Vec::new(),
            len_bits,
        }
    }

    /// Room for `more` instances (each column grows once a block, not by doubling).
    fn reserve(&mut self, more: usize) {
        self.a.reserve(more);
        self.b.reserve(more);
        self.label.reserve(more);
    }

    fn push(&mut self, a: [u64; 2], b: [u64; 2], label: u8) {
        self.a.push(S::pack(a[0], a[1] - a[0], self.len_bits));
        self.b.push(S::pack(b[0], b[1] - b[0], self.len_bits));
        self.label.push(label);
    }

    /// The index in shuffled order, one column at a time (each walked column is freed as soon
    /// as it is gathered).
    fn shuffled<P: Position>(self, order: &[P], threads: usize) -> Result<PairIndex> {
        let Walked {
            a: walked_a,
            b: walked_b,
            label: walked_label,
            len_bits,
        } = self;
        let label = gather(order, threads, |j| walked_label[j])?;
        drop(walked_label);
        let a = gather(order, threads, |j| walked_a[j].range(len_bits))?;
        drop(walked_a);
        let b = gather(order, threads, |j| walked_b[j].range(len_bits))?;
        drop(walked_b);
        Ok(PairIndex { a, b, label })
    }
}

/// A position in the shuffle's permutation: `u32` while the instances fit, else `usize`.
trait Position: Copy + Send + Sync {
    fn from_usize(i: usize) -> Self;
    fn to_usize(self) -> usize;
}

impl Position for u32 {
    fn from_usize(i: usize) -> Self {
        i as u32 // (used only when every position fits)
    }
    fn to_usize(self) -> usize {
        self as usize
    }
}

impl Position for usize {
    fn from_usize(i: usize) -> Self {
        i
    }
    fn to_usize(self) -> usize {
        self
    }
}

/// The Fisher–Yates permutation of `0..total` drawn from the stream `(seed, epoch)`: instance
/// `order[k]` (in walk order) goes to place `k`. The draws depend only on `total`, not on the
/// integer type that holds the permutation.
///
/// The swaps `i <-> j` for `i = total - 1, …, 1` are made in that order, as the textbook loop
/// makes them; only the random positions `j` of the next [`SHUFFLE_AHEAD`] steps are drawn
/// first (they depend on the stream and `i` alone) and read before the swaps, so that their
/// cache misses overlap instead of waiting one after the other.
fn shuffle_order<P: Position>(total: usize, seed: u64, epoch: u64) -> Vec<P> {
    let mut order: Vec<P> = (0..total).map(P::from_usize).collect();
    let mut rng = Rng::from_key(&[seed, epoch, ORDER]);
    let mut ahead = [0usize; SHUFFLE_AHEAD];
    // Steps `i = top - 1, top - 2, …` down to 1.
    let mut top = total;
    while top > 1 {
        let steps = (top - 1).min(SHUFFLE_AHEAD);
        for (s, j) in ahead[..steps].iter_mut().enumerate() {
            *j = rng.below((top - s) as u64) as usize;
        }
        let touched = ahead[..steps]
            .iter()
            .fold(0usize, |acc, &j| acc ^ order[j].to_usize());
        std::hint::black_box(touched);
        for (s, &j) in ahead[..steps].iter().enumerate() {
            order.swap(top - 1 - s, j);
        }
        top -= steps;
    }
    order
}

/// `out[k] = value(order[k])`, in parallel over blocks of `out`.
fn gather<V: Copy + Default + Send, P: Position>(
    order: &[P],
    threads: usize,
    value: impl Fn(usize) -> V + Sync + Send,
) -> Result<Vec<V>> {
    let mut out = vec![V::default(); order.len()];
    let mut parts: Vec<&mut [V]> = out.chunks_mut(GATHER_GRAIN).collect();
    for_each_mut(threads, &mut parts, |c, part| {
        let positions = &order[c * GATHER_GRAIN..];
        for (slot, &k) in part.iter_mut().zip(positions) {
            *slot = value(k.to_usize());
        }
    })?;
    Ok(out)
}

/// The reads of other documents' offsets that interleaved walks (see [`walk_interleaved`])
/// are about to make: a walk records the entry it needs and pauses; once every walk of the
/// group has paused, [`Lookups::load`] reads all the recorded entries in one tight loop, whose
/// independent cache misses overlap, and the walks resume to find them in cache.
#[derive(Default)]
struct Lookups {
    /// Whether walks pause (off: a walk runs straight through, reading as it goes).
    interleaved: bool,
    /// Documents `r` whose `document_offsets[r..=r + 1]` are wanted.
    documents: RefCell<Vec<usize>>,
    /// Sentences `s` whose `sentence_offsets[s..]` (a few entries) are wanted.
    sentences: RefCell<Vec<usize>>,
}

impl Lookups {
    async fn document(&self, r: usize) {
        if self.interleaved {
            self.documents.borrow_mut().push(r);
            Pause::default().await;
        }
    }

    async fn sentence(&self, s: usize) {
        if self.interleaved {
            self.sentences.borrow_mut().push(s);
            Pause::default().await;
        }
    }

    /// Reads the recorded entries (the first and eighth from each sentence: the cache lines of
    /// a random B's first sentences).
    fn load<T>(&self, corpus: &Corpus<'_, T>) {
        let (doc_offsets, sent_offsets) = (corpus.document_offsets, corpus.sentence_offsets);
        let last = sent_offsets.len() - 1;
        let mut touched = 0i64;
        for r in self.documents.borrow_mut().drain(..) {
            touched ^= doc_offsets[r] ^ doc_offsets[r + 1];
        }
        for s in self.sentences.borrow_mut().drain(..) {
            touched ^= sent_offsets[s] ^ sent_offsets[(s + 7).min(last)];
        }
        std::hint::black_box(touched);
    }
}

/// A future that is pending once: where an interleaved walk hands over to the next one.
#[derive(Default)]
struct Pause(bool);

impl Future for Pause {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// The instances of documents `first..first + out.len()` into `out`, document by document,
/// walking `width` documents at once on this thread.
///
/// A document's walk reads its own offsets in order, but each random B reads the offsets of a
/// random document: a cache miss (and, on a large corpus, a TLB miss) that the walk waits for,
/// because its next draws depend on what it reads. The walks of different documents are
/// independent, so they are run as coroutines (`async` functions polled by hand): each one
/// runs until its next random read, [`Lookups::load`] then makes the reads of the whole group
/// at once, and each resumes. Every walk draws from its own stream in its own order, so the
/// instances are exactly those of walking the documents one after the other.
fn walk_interleaved<T>(
    corpus: &Corpus<'_, T>,
    p: &PairParams,
    streams: &Streams,
    first: usize,
    out: &mut [Vec<Instance>],
    width: usize,
) {
    type Walk<'w> = Pin<Box<dyn Future<Output = Vec<Instance>> + 'w>>;
    // (One walk at a time: no pauses, each walk runs straight through.)
    let lookups = Lookups {
        interleaved: width > 1,
        ..Lookups::default()
    };
    let mut cx = Context::from_waker(Waker::noop());
    let mut walks: Vec<(usize, Walk<'_>)> = Vec::with_capacity(width);
    let mut next = 0;
    while next < out.len() || !walks.is_empty() {
        while walks.len() < width.max(1) && next < out.len() {
            let walk = document_instances(corpus, p, first + next, streams, &lookups);
            walks.push((next, Box::pin(walk)));
            next += 1;
        }
        walks.retain_mut(|(k, walk)| match walk.as_mut().poll(&mut cx) {
            Poll::Ready(instances) => {
                out[*k] = instances;
                false
            }
            Poll::Pending => true,
        });
        lookups.load(corpus);
    }
}

/// Google BERT's walk over document `d` (ALBERT's for SOP), from its stream of `streams`;
/// pauses before each read of another document's offsets when `lookups` is interleaved.
async fn document_instances<T>(
    corpus: &Corpus<'_, T>,
    p: &PairParams,
    d: usize,
    streams: &Streams,
    lookups: &Lookups,
) -> Vec<Instance> {
    let mut rng = streams.row(&RowKeys::Samples(&[d as u64]), 0);
    let rng = &mut rng;
    // (Room for the usual count: about one instance per four sentences.)
    let mut out = Vec::with_capacity(corpus.sentences(d).len() / 4 + 1);
    let sentences = corpus.sentences(d);
    let (first, n) = (sentences.start, sentences.len());
    let max_tokens = p.max_seq_length - 3;
    let mut target = max_tokens;
    if Chance::new(p.short_seq_prob).hit(rng.next_u64()) {
        target = 2 + rng.below((max_tokens - 1) as u64) as usize; // uniform on [2, max_tokens]
    }
    let (mut chunk_start, mut chunk_len_tokens, mut chunk_sents) = (0usize, 0usize, 0usize);
    let mut i = 0usize;
    while i < n {
        if chunk_sents == 0 {
            chunk_start = i;
        }
        chunk_sents += 1;
        chunk_len_tokens += corpus.sentence_len(first + i);
        if i + 1 == n || chunk_len_tokens >= target {
            let chunk = first + chunk_start..first + i + 1;
            let (pair, put_back) = chunk_pair(corpus, p, (d, chunk), target, rng, lookups).await;
            // The chunk's unused sentences start the next one.
            i -= put_back;
            if let Some((mut a, mut b, label)) = pair
                && a.1 > a.0
                && b.1 > b.0
            {
                truncate_pair(&mut a, &mut b, max_tokens, rng);
                out.push(([a.0, a.1], [b.0, b.1], label));
            }
            chunk_sents = 0;
            chunk_len_tokens = 0;
        }
        i += 1;
    }
    out
}

/// Token ranges of A and B and the label.
type Pair = ((u64, u64), (u64, u64), u8);

/// The pair a finished chunk (the sentences `chunk` of document `d`) makes, and how many of
/// its sentences go back to start the next chunk (those after A when B is random).
async fn chunk_pair<T>(
    corpus: &Corpus<'_, T>,
    p: &PairParams,
    (d, chunk): (usize, std::ops::Range<usize>),
    target: usize,
    rng: &mut Rng,
    lookups: &Lookups,
) -> (Option<Pair>, usize) {
    let sents = chunk.len();
    let a_end = if sents >= 2 {
        1 + rng.below((sents - 1) as u64) as usize
    } else {
        1
    };
    let a = corpus.span(chunk.start, chunk.start + a_end);
    let rest = corpus.span(chunk.start + a_end, chunk.end);
    // A random B needs a document to come from: another one, or any under Google's rule.
    let can_random =
        corpus.num_documents() > 1 || p.rules.random_document == RandomDocument::GoogleRetries;
    // Every case but a random B is settled here.
    match p.task {
        Task::Nsp => {
            let want_random = sents == 1 || Chance::new(p.random_next_prob).hit(rng.next_u64());
            if !(want_random && can_random) {
                return if sents >= 2 {
                    (Some((a, rest, 0)), 0)
                } else {
                    (None, 0) // one document, one sentence: no pair possible
                };
            }
        }
        Task::Sop if sents >= 2 => {
            return if Chance::new(p.swap_prob).hit(rng.next_u64()) {
                (Some((rest, a, 1)), 0)
            } else {
                (Some((a, rest, 0)), 0)
            };
        }
        Task::Sop
            if p.rules.sop_single_sentence == SingleSentenceSop::RandomDocument && can_random => {}
        Task::Sop => return (None, 0),
    }
    let target_b = target.saturating_sub((a.1 - a.0) as usize);
    match random_b(corpus, p.rules.random_document, d, target_b, rng, lookups).await {
        Some(b) => (Some((a, b, 1)), sents - a_end),
        None => (None, 0),
    }
}

/// The document a random B comes from (see [`RandomDocument`]); needs another document, or
/// Google's rule.
fn random_document(n_docs: usize, rule: RandomDocument, d: usize, rng: &mut Rng) -> usize {
    match rule {
        RandomDocument::Other => {
            let r = rng.below((n_docs - 1) as u64) as usize;
            if r >= d { r + 1 } else { r }
        }
        RandomDocument::GoogleRetries => {
            let mut r = d;
            for _ in 0..10 {
                r = rng.below(n_docs as u64) as usize;
                if r != d {
                    break;
                }
            }
            r
        }
    }
}

/// NSP's random B: a run of sentences of about `target_b` tokens from a random sentence of
/// a random document (`None` when that document has no sentences).
async fn random_b<T>(
    corpus: &Corpus<'_, T>,
    rule: RandomDocument,
    d: usize,
    target_b: usize,
    rng: &mut Rng,
    lookups: &Lookups,
) -> Option<(u64, u64)> {
    let r = random_document(corpus.num_documents(), rule, d, rng);
    lookups.document(r).await;
    let rs = corpus.sentences(r);
    if rs.is_empty() {
        return None;
    }
    let start = rs.start + rng.below(rs.len() as u64) as usize;
    lookups.sentence(start).await;
    let mut end = start;
    let mut len = 0usize;
    while end < rs.end && (end == start || len < target_b) {
        len += corpus.sentence_len(end);
        end += 1;
    }
    Some(corpus.span(start, end))
}

/// Google's `truncate_seq_pair`: while too long, trim the longer side (ties: B), from its
/// front or back with probability ½ each. The sides' trim counts follow from the lengths alone
/// (the longer side shrinks until they are equal, then B and A alternate), so they are computed
/// in closed form; each side's front count is then Binomial(k, ½), drawn exactly as the number
/// of set bits among `k` fresh random bits.
fn truncate_pair(a: &mut (u64, u64), b: &mut (u64, u64), max_tokens: usize, rng: &mut Rng) {
    let (mut la, mut lb) = (a.1 - a.0, b.1 - b.0);
    let mut excess = (la + lb).saturating_sub(max_tokens as u64);
    if excess == 0 {
        return;
    }
    let (mut ka, mut kb) = (0, 0);
    if la > lb {
        let d = excess.min(la - lb);
        ka += d;
        la -= d;
        excess -= d;
    } else if lb > la {
        let d = excess.min(lb - la);
        kb += d;
        lb -= d;
        excess -= d;
    }
    kb += excess.div_ceil(2);
    ka += excess / 2;
    debug_assert!(la >= excess / 2 && lb >= excess.div_ceil(2));
    for (side, k) in [(a, ka), (b, kb)] {
        let front = fair_coin_heads(k, rng);
        side.0 += front;
        side.1 -= k - front;
    }
}

/// Number of heads in `k` fair coin flips: the popcount of `k` random bits (64 per draw).
fn fair_coin_heads(k: u64, rng: &mut Rng) -> u64 {
    let mut heads = 0;
    let mut left = k;
    while left >= 64 {
        heads += u64::from(rng.next_u64().count_ones());
        left -= 64;
    }
    if left > 0 {
        heads += u64::from((rng.next_u64() & ((1u64 << left) - 1)).count_ones());
    }
    heads
}

/// The instances rank `rank` of `world` reads, for `indices` into its shard of `total`
/// instances: item `i` is instance `i * world + rank` and a negative item counts from the
/// end. Returns the instance numbers and their sample keys `epoch << 40 | instance`: keys are
/// global, so an instance's masks do not depend on the rank or the world size.
pub fn shard_items(
    total: u64,
    indices: &[i64],
    rank: u64,
    world: u64,
    epoch: u64,
) -> Result<(Vec<u64>, Vec<u64>)> {
    if world == 0 || rank >= world {
        return Err(CoreError::invalid("rank", "need 0 <= rank < world"));
    }
    let len = (total.saturating_sub(rank)).div_ceil(world) as i64;
    let mut items = Vec::with_capacity(indices.len());
    let mut keys = Vec::with_capacity(indices.len());
    for (k, &i) in indices.iter().enumerate() {
        let local = if i < 0 { i + len } else { i };
        if !(0..len).contains(&local) {
            return Err(CoreError::IndexOutOfRange {
                arg: format!("indices[{k}]"),
                value: i,
                len,
            });
        }
        let instance = local as u64 * world + rank;
        items.push(instance);
        keys.push((epoch << 40) | instance);
    }
    Ok((items, keys))
}

/// The tokens of instances `items` as `[CLS] A [SEP] B [SEP]`: flat ids and token types
/// (0 up to and including the first [SEP], 1 after), CSR offsets, and labels.
pub fn materialize<T: TokenId>(
    ids: &[T],
    index: (&[[u64; 2]], &[[u64; 2]], &[u8]),
    items: &[u64],
    cls: i64,
    sep: i64,
) -> Result<PairRows> {
    let (a, b, label) = index;
    let n = label.len();
    if a.len() != n || b.len() != n {
        return Err(CoreError::shape(
            "index",
            "a, b and label must have one entry each",
        ));
    }
    let total: usize = items
        .iter()
        .filter_map(|&i| usize::try_from(i).ok().filter(|&i| i < n))
        .map(|i| (a[i][1].saturating_sub(a[i][0]) + b[i][1].saturating_sub(b[i][0])) as usize + 3)
        .sum();
    // Recycled buffers (see `BufferPool`): these become the batch's arrays.
    let mut values = i64::pool().take(total);
    let mut types = i64::pool().take(total);
    let mut offsets = Vec::with_capacity(items.len() + 1);
    let mut labels = Vec::with_capacity(items.len());
    offsets.push(0);
    for (k, &item) in items.iter().enumerate() {
        let i = usize::try_from(item).unwrap_or(usize::MAX);
        if i >= n {
            return Err(CoreError::invalid(
                "indices",
                format!("indices[{k}] = {item} is out of range for {n} instances"),
            ));
        }
        if [a[i], b[i]]
            .iter()
            .any(|&[lo, hi]| hi < lo || hi as usize > ids.len())
        {
            return Err(CoreError::shape(
                "index",
                format!("instance {i} is out of the corpus"),
            ));
        }
        write_pair(ids, (a[i], b[i]), (cls, sep), &mut values, &mut types);
        offsets.push(values.len());
        labels.push(i64::from(label[i]));
    }
    Ok(PairRows {
        ids: values,
        token_type_ids: types,
        offsets,
        labels,
    })
}

/// Appends `[CLS] A [SEP] B [SEP]` for the token ranges `(A, B)` to `values`, and its token
/// types (0 up to and including the first [SEP], 1 after) to `types`.
fn write_pair<T: TokenId>(
    ids: &[T],
    (ra, rb): ([u64; 2], [u64; 2]),
    (cls, sep): (i64, i64),
    values: &mut Vec<i64>,
    types: &mut Vec<i64>,
) {
    let start = values.len();
    values.push(cls);
    values.extend(
        ids[ra[0] as usize..ra[1] as usize]
            .iter()
            .map(|x| x.to_i64()),
    );
    values.push(sep);
    let first_segment = (ra[1] - ra[0]) as usize + 2;
    values.extend(
        ids[rb[0] as usize..rb[1] as usize]
            .iter()
            .map(|x| x.to_i64()),
    );
    values.push(sep);
    let row = values.len() - start;
    types.extend(std::iter::repeat_n(0, first_segment));
    types.extend(std::iter::repeat_n(1, row - first_segment));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs` lists each document's sentence lengths; sentence s of the corpus holds tokens
    /// `1000 * s + k`.
    fn corpus_of(docs: &[&[usize]]) -> (Vec<u32>, Vec<i64>, Vec<i64>) {
        let (mut ids, mut so, mut dof) = (Vec::new(), vec![0i64], vec![0i64]);
        let mut s = 0u32;
        for doc in docs {
            for &len in doc.iter() {
                ids.extend((0..len as u32).map(|k| 1000 * s + k));
                so.push(ids.len() as i64);
                s += 1;
            }
            dof.push((so.len() - 1) as i64);
        }
        (ids, so, dof)
    }

    /// A random corpus of `n_docs` documents (empty documents and empty sentences included):
    /// sentence offsets and document offsets.
    fn random_offsets(n_docs: usize, seed: u64) -> (Vec<i64>, Vec<i64>) {
        let mut r = Rng::from_seed(seed);
        let (mut so, mut dof) = (vec![0i64], vec![0i64]);
        for _ in 0..n_docs {
            for _ in 0..r.below(13) {
                let len = if r.below(20) == 0 { 0 } else { 1 + r.below(40) };
                so.push(so[so.len() - 1] + len as i64);
            }
            dof.push((so.len() - 1) as i64);
        }
        (so, dof)
    }

    fn digest(index: &PairIndex) -> u64 {
        let mut words = vec![index.len() as u64];
        for i in 0..index.len() {
            words.extend([index.a[i][0], index.a[i][1], index.b[i][0], index.b[i][1]]);
            words.push(u64::from(index.label[i]));
        }
        crate::rng::hash_words(&words)
    }

    #[test]
    fn golden_indices() {
        // Pinned from the plain walk (one document at a time, before the interleaved walk):
        // the same seed gives the same index, bit for bit, for every task and rule.
        let (so, dof) = random_offsets(3000, 11);
        let units = vec![(); so[so.len() - 1] as usize];
        let c = Corpus::new(&units, &so, &dof).unwrap();
        let google = PairRules {
            random_document: RandomDocument::GoogleRetries,
            sop_single_sentence: SingleSentenceSop::RandomDocument,
        };
        let mut got = Vec::new();
        for task in [Task::Nsp, Task::Sop] {
            for rules in [PairRules::default(), google] {
                let p = PairParams {
                    max_seq_length: 48,
                    short_seq_prob: 0.3,
                    rules,
                    ..PairParams::new(task)
                };
                let index = build_index(&c, &p, 5, 2, 2).unwrap();
                got.push((index.len(), digest(&index)));
            }
        }
        let golden = [
            (9503, 832_417_581_097_601_358),
            (9565, 15_181_480_890_395_216_254),
            (5458, 4_573_870_524_261_331_583),
            (7820, 5_176_572_021_020_038_860),
        ];
        assert_eq!(got, golden);
    }

    /// Document `d`'s instances walked alone, straight through (no pauses).
    fn walk_plain<T>(
        c: &Corpus<'_, T>,
        p: &PairParams,
        streams: &Streams,
        d: usize,
    ) -> Vec<Instance> {
        let lookups = Lookups::default();
        let mut walk = std::pin::pin!(document_instances(c, p, d, streams, &lookups));
        match walk.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(instances) => instances,
            Poll::Pending => panic!("a plain walk never pauses"),
        }
    }

    /// A corpus past [`SMALL_SENTENCES`] is walked interleaved, a small one walk by walk; the
    /// index is the same either way.
    #[test]
    fn the_index_does_not_depend_on_the_walk_width() {
        let mut r = Rng::from_seed(9);
        let (mut so, mut dof) = (vec![0i64], vec![0i64]);
        while so.len() <= SMALL_SENTENCES + 1 {
            for _ in 0..1 + r.below(60) {
                so.push(so[so.len() - 1] + 1 + r.below(40) as i64);
            }
            dof.push((so.len() - 1) as i64);
        }
        let units = vec![(); so[so.len() - 1] as usize];
        let big = Corpus::new(&units, &so, &dof).unwrap();
        let small_units = vec![(); so[1000] as usize];
        let small = Corpus::new(&small_units, &so[..1001], &[0, 500, 1000]).unwrap();
        assert_eq!((walk_width(&big), walk_width(&small)), (INTERLEAVE, 1));
        let p = PairParams::new(Task::Nsp);
        let by = |c: &Corpus<'_, ()>, width, threads| {
            build::<(), u64>(c, &p, 4, 2, threads, width).unwrap()
        };
        let want = build_index(&big, &p, 4, 2, 2).unwrap();
        assert_eq!(by(&big, 1, 1), want);
        assert_eq!(by(&big, INTERLEAVE, 1), want);
        assert_eq!(build_index(&small, &p, 4, 2, 1).unwrap(), by(&small, 5, 1));
        // Control: another epoch gives another index.
        assert_ne!(by(&big, 1, 1), build_index(&big, &p, 4, 3, 2).unwrap());
    }

    #[test]
    fn interleaved_walks_equal_plain_walks() {
        let google = PairRules {
            random_document: RandomDocument::GoogleRetries,
            sop_single_sentence: SingleSentenceSop::RandomDocument,
        };
        for (seed, n_docs) in [(1, 1), (2, 2), (3, 7), (4, 300)] {
            let (so, dof) = random_offsets(n_docs, seed);
            let units = vec![(); so[so.len() - 1] as usize];
            let c = Corpus::new(&units, &so, &dof).unwrap();
            let streams = Streams::new(seed, 0, PURPOSE);
            for task in [Task::Nsp, Task::Sop] {
                for rules in [PairRules::default(), google] {
                    let p = PairParams {
                        max_seq_length: 40,
                        short_seq_prob: 0.3,
                        rules,
                        ..PairParams::new(task)
                    };
                    let plain: Vec<Vec<Instance>> = (0..n_docs)
                        .map(|d| walk_plain(&c, &p, &streams, d))
                        .collect();
                    if n_docs > 2 {
                        assert!(plain.iter().flatten().any(|i| i.2 == 1));
                    }
                    for width in [1, 3, 16, 1000] {
                        let mut out = vec![Vec::new(); n_docs];
                        walk_interleaved(&c, &p, &streams, 0, &mut out, width);
                        assert_eq!(out, plain, "{task:?} {rules:?} width {width}");
                    }
                    // A task's documents start anywhere.
                    let mut tail = vec![Vec::new(); n_docs / 2];
                    walk_interleaved(&c, &p, &streams, n_docs - n_docs / 2, &mut tail, 4);
                    assert_eq!(tail, plain[n_docs - n_docs / 2..]);
                }
            }
        }
    }

    #[test]
    fn the_shuffle_is_the_textbook_fisher_yates() {
        for total in [
            0,
            1,
            2,
            3,
            SHUFFLE_AHEAD,
            SHUFFLE_AHEAD + 1,
            2 * SHUFFLE_AHEAD + 2,
            999,
        ] {
            let mut want: Vec<usize> = (0..total).collect();
            let mut rng = Rng::from_key(&[4, 1, ORDER]);
            for i in (1..total).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                want.swap(i, j);
            }
            assert_eq!(shuffle_order::<usize>(total, 4, 1), want, "{total}");
        }
    }

    #[test]
    fn packed_sides() {
        // Round trips at the limits of both layouts.
        for bits in [1, 7, 32] {
            let len = (1u64 << bits) - 1;
            let lo = (1u64 << (64 - bits)) - 1;
            assert_eq!(u64::pack(lo, len, bits).range(bits), [lo, lo + len]);
            assert_eq!(u64::pack(lo, 0, bits).range(bits), [lo, lo]);
            let wide = u64::MAX - len;
            assert_eq!(u128::pack(wide, len, bits).range(bits), [wide, u64::MAX]);
        }
        assert_eq!(len_bits(125), 7);
        assert_eq!(len_bits(128), 8);
        assert_eq!(len_bits(u32::MAX as usize), 32);
        // Either layout gives the same index.
        let (so, dof) = random_offsets(500, 9);
        let units = vec![(); so[so.len() - 1] as usize];
        let c = Corpus::new(&units, &so, &dof).unwrap();
        let p = PairParams::new(Task::Nsp);
        let narrow = build::<_, u64>(&c, &p, 1, 0, 1, walk_width(&c)).unwrap();
        assert!(narrow.len() > 100);
        assert_eq!(
            narrow,
            build::<_, u128>(&c, &p, 1, 0, 2, walk_width(&c)).unwrap()
        );
        assert_eq!(narrow, build_index(&c, &p, 1, 0, 1).unwrap());
    }

    #[test]
    fn the_index_reads_only_the_offsets_and_spans_blocks() {
        // More documents than one block of the walk; the ids replaced by their number alone.
        let docs: Vec<Vec<usize>> = (0..DOC_BLOCK + 700)
            .map(|d| (0..(1 + d % 4)).map(|s| 2 + (s + d) % 9).collect())
            .collect();
        let refs: Vec<&[usize]> = docs.iter().map(Vec::as_slice).collect();
        let (ids, so, dof) = corpus_of(&refs);
        let units = vec![(); ids.len()];
        let p = PairParams {
            max_seq_length: 16,
            ..PairParams::new(Task::Nsp)
        };
        let with_ids = build_index(&Corpus::new(&ids, &so, &dof).unwrap(), &p, 3, 1, 1).unwrap();
        let counted = build_index(&Corpus::new(&units, &so, &dof).unwrap(), &p, 3, 1, 2).unwrap();
        assert_eq!(with_ids, counted);
        assert!(with_ids.len() > DOC_BLOCK);
        // The permutation's integer type does not change the shuffle.
        let narrow: Vec<usize> = shuffle_order::<u32>(5000, 3, 1)
            .into_iter()
            .map(|k| k as usize)
            .collect();
        assert_eq!(narrow, shuffle_order::<usize>(5000, 3, 1));
        let too_long = PairParams {
            max_seq_length: usize::MAX,
            ..PairParams::new(Task::Nsp)
        };
        let c = Corpus::new(&units, &so, &dof).unwrap();
        assert!(build_index(&c, &too_long, 3, 1, 1).is_err());
    }

    #[test]
    fn instances_fit_and_come_from_the_corpus_in_order() {
        let docs: Vec<Vec<usize>> = (0..60)
            .map(|d| (0..(2 + d % 7)).map(|s| 3 + (s * 7 + d) % 40).collect())
            .collect();
        let refs: Vec<&[usize]> = docs.iter().map(Vec::as_slice).collect();
        let (ids, so, dof) = corpus_of(&refs);
        let c = Corpus::new(&ids, &so, &dof).unwrap();
        for task in [Task::Nsp, Task::Sop] {
            let p = PairParams {
                max_seq_length: 32,
                ..PairParams::new(task)
            };
            let idx = build_index(&c, &p, 7, 0, 1).unwrap();
            assert!(idx.len() > 50);
            for i in 0..idx.len() {
                let (a, b) = (idx.a[i], idx.b[i]);
                assert!(a[1] > a[0] && b[1] > b[0]);
                assert!((a[1] - a[0] + b[1] - b[0]) as usize <= 32 - 3);
            }
            // Same index for any thread count.
            assert_eq!(idx, build_index(&c, &p, 7, 0, 4).unwrap());
            assert_ne!(idx, build_index(&c, &p, 7, 1, 1).unwrap());
        }
    }

    #[test]
    fn sop_swaps_true_continuations_and_nsp_uses_other_documents() {
        let docs: Vec<Vec<usize>> = (0..40).map(|_| vec![5, 6, 7, 8]).collect();
        let refs: Vec<&[usize]> = docs.iter().map(Vec::as_slice).collect();
        let (ids, so, dof) = corpus_of(&refs);
        let c = Corpus::new(&ids, &so, &dof).unwrap();
        let doc_of = |tok: u64| (ids[tok as usize] / 1000) as usize / 4;
        let sop = build_index(
            &c,
            &PairParams {
                max_seq_length: 64,
                ..PairParams::new(Task::Sop)
            },
            1,
            0,
            1,
        )
        .unwrap();
        for i in 0..sop.len() {
            let (a, b) = (sop.a[i], sop.b[i]);
            assert_eq!(doc_of(a[0]), doc_of(b[0]));
            if sop.label[i] == 1 {
                assert_eq!(b[1], a[0], "swapped: B ends where A starts");
            } else {
                assert_eq!(a[1], b[0], "in order: B continues A");
            }
        }
        let nsp = build_index(
            &c,
            &PairParams {
                max_seq_length: 64,
                ..PairParams::new(Task::Nsp)
            },
            1,
            0,
            1,
        )
        .unwrap();
        for i in 0..nsp.len() {
            let (a, b) = (nsp.a[i], nsp.b[i]);
            if nsp.label[i] == 1 {
                assert_ne!(doc_of(a[0]), doc_of(b[0]));
            } else {
                assert_eq!(a[1], b[0]);
            }
        }
    }

    #[test]
    fn one_document_corpus_never_pairs_with_itself_as_random() {
        let (ids, so, dof) = corpus_of(&[&[4, 4, 4, 4, 4, 4, 4, 4]]);
        let c = Corpus::new(&ids, &so, &dof).unwrap();
        let idx = build_index(
            &c,
            &PairParams {
                max_seq_length: 16,
                ..PairParams::new(Task::Nsp)
            },
            3,
            0,
            1,
        )
        .unwrap();
        assert!(!idx.is_empty());
        assert!(idx.label.iter().all(|&l| l == 0));
        // Single-sentence documents give SOP nothing.
        let (ids, so, dof) = corpus_of(&[&[9], &[9]]);
        let c = Corpus::new(&ids, &so, &dof).unwrap();
        assert!(
            build_index(&c, &PairParams::new(Task::Sop), 3, 0, 1)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn closed_form_truncation_matches_the_step_by_step_rule() {
        // Against Google's loop (one side per step) for the side counts, over many shapes.
        for (la, lb, max) in [
            (50, 10, 40),
            (10, 50, 40),
            (30, 30, 41),
            (31, 30, 40),
            (3, 90, 9),
        ] {
            let (mut sa, mut sb, mut ka, mut kb) = (la, lb, 0, 0);
            while sa + sb > max {
                if sa > sb {
                    sa -= 1;
                    ka += 1;
                } else {
                    sb -= 1;
                    kb += 1;
                }
            }
            let mut r = Rng::from_seed(1);
            let (mut a, mut b) = ((100u64, 100 + la), (500u64, 500 + lb));
            truncate_pair(&mut a, &mut b, max as usize, &mut r);
            assert_eq!((a.1 - a.0, b.1 - b.0), (sa, sb), "{la} {lb} {max}");
            assert_eq!((a.0 - 100) + (100 + la - a.1), ka);
            assert_eq!((b.0 - 500) + (500 + lb - b.1), kb);
        }
        // Front counts are Binomial(k, 1/2): mean k/2, variance k/4.
        let mut r = Rng::from_seed(2);
        let n = 20_000;
        let k = 100;
        let heads: Vec<u64> = (0..n).map(|_| fair_coin_heads(k, &mut r)).collect();
        let mean = heads.iter().sum::<u64>() as f64 / n as f64;
        assert!(
            (mean - 50.0).abs() < 5.0 * (25.0f64 / n as f64).sqrt(),
            "{mean}"
        );
        assert!(heads.iter().all(|&h| h <= k));
    }

    #[test]
    fn materialized_rows() {
        let ids = [10u16, 11, 12, 13, 14];
        let a = [[0u64, 2]];
        let b = [[3u64, 5]];
        let rows = materialize(&ids, (&a, &b, &[1]), &[0], 2, 3).unwrap();
        assert_eq!(rows.ids, [2, 10, 11, 3, 13, 14, 3]);
        assert_eq!(rows.token_type_ids, [0, 0, 0, 0, 1, 1, 1]);
        assert_eq!(rows.offsets, [0, 7]);
        assert_eq!(rows.labels, [1]);
        assert!(materialize(&ids, (&a, &b, &[1]), &[1], 2, 3).is_err());
    }

    #[test]
    fn bad_parameters_and_corpora() {
        let (ids, so, dof) = corpus_of(&[&[3, 3]]);
        assert!(Corpus::new(&ids, &so[..2], &dof).is_err());
        let c = Corpus::new(&ids, &so, &dof).unwrap();
        let bad = PairParams {
            max_seq_length: 4,
            ..PairParams::new(Task::Nsp)
        };
        assert!(build_index(&c, &bad, 0, 0, 1).is_err());
        let bad = PairParams {
            short_seq_prob: 1.5,
            ..PairParams::new(Task::Nsp)
        };
        assert!(build_index(&c, &bad, 0, 0, 1).is_err());
        assert!(Task::parse("task", "mlm").is_err());
    }

    #[test]
    fn shard_keys_are_global() {
        // 10 instances over 3 ranks: rank 1 holds instances 1, 4, 7; its keys are the
        // instances' own numbers (with the epoch above bit 40), whatever the world size.
        let (items, keys) = shard_items(10, &[0, 1, -1], 1, 3, 2).unwrap();
        assert_eq!(items, [1, 4, 7]);
        assert_eq!(keys, [(2 << 40) | 1, (2 << 40) | 4, (2 << 40) | 7]);
        let (whole, whole_keys) = shard_items(10, &[1, 4, 7], 0, 1, 2).unwrap();
        assert_eq!((whole, whole_keys), (items, keys));
        assert!(shard_items(10, &[3], 1, 3, 0).is_err());
        assert!(shard_items(10, &[0], 3, 3, 0).is_err());
    }

    #[test]
    fn google_and_albert_rules() {
        let google = PairRules {
            random_document: RandomDocument::GoogleRetries,
            sop_single_sentence: SingleSentenceSop::RandomDocument,
        };
        // One document: Google pairs it with itself and calls that "random".
        let (ids, so, dof) = corpus_of(&[&[4, 4, 4, 4, 4, 4, 4, 4]]);
        let c = Corpus::new(&ids, &so, &dof).unwrap();
        let p = PairParams {
            max_seq_length: 16,
            rules: google,
            ..PairParams::new(Task::Nsp)
        };
        let random = (0..20)
            .map(|epoch| build_index(&c, &p, 3, epoch, 1).unwrap())
            .filter(|idx| idx.label.contains(&1))
            .count();
        assert!(random > 0);
        // ALBERT keeps SOP's single-sentence chunks, B from another document, label 1.
        let (ids, so, dof) = corpus_of(&[&[9], &[9], &[5, 5]]);
        let c = Corpus::new(&ids, &so, &dof).unwrap();
        let p = PairParams {
            rules: google,
            ..PairParams::new(Task::Sop)
        };
        let idx = build_index(&c, &p, 3, 0, 1).unwrap();
        let singles: Vec<usize> = (0..idx.len())
            .filter(|&i| idx.a[i][1] - idx.a[i][0] == 9)
            .collect();
        assert_eq!(singles.len(), 2);
        for i in singles {
            assert_eq!(idx.label[i], 1);
            assert_ne!(idx.b[i][0], idx.a[i][0]);
        }
        // Ours drops them: only the two-sentence document remains.
        let ours = build_index(&c, &PairParams::new(Task::Sop), 3, 0, 1).unwrap();
        assert_eq!(ours.len(), 1);
    }
}
