//! Throughput probe of the exact top-k search:
//! `cargo run --release --example mining_throughput -- [queries] [corpus] [dim] [k] [threads]`.

use std::time::Instant;

use lmobjectives_core::mining::{Embeddings, Search, SearchOptions, Similarity, Values};
use lmobjectives_core::rng::Rng;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("integer arguments"))
        .collect();
    let get = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (q, n, d, k, threads) = (
        get(0, 1000),
        get(1, 20_000),
        get(2, 384),
        get(3, 11),
        get(4, 0),
    );
    let mut rng = Rng::from_seed(7);
    let mut draw =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.next_f64() as f32 - 0.5).collect() };
    let qv = draw(q * d);
    let cv = draw(n * d);
    let queries = Embeddings::new("queries", Values::F32(&qv), q, d).unwrap();
    let corpus = Embeddings::new("corpus", Values::F32(&cv), n, d).unwrap();
    for sim in [Similarity::Dot, Similarity::Cosine] {
        let search = Search::new(queries, corpus, &SearchOptions::new(k, sim), threads).unwrap();
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            let out = search.run_all(threads).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            assert_eq!(out.len.iter().sum::<usize>(), q * k);
        }
        let gflops = 2.0 * (q * n * d) as f64 / best / 1e9;
        println!(
            "{sim:?} {q}x{n}x{d} k={k} isa={} plan={:?}: {:.1} ms, {:.0} queries/s, {:.1} GFLOP/s",
            search.isa().name(),
            search.plan(),
            best * 1e3,
            q as f64 / best,
            gflops
        );
    }
}
