//! Quick throughput probe of the denoising kernels (T5 span corruption, BART noising):
//! `cargo run --release --example denoise_throughput`.

use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use lmobjectives_core::denoise::Widths;
use lmobjectives_core::denoise::bart::{BartConfig, BartJob, BartParams, MaskLength};
use lmobjectives_core::denoise::seq2seq::{Seq2SeqConfig, Seq2SeqJob, Seq2SeqParams};
use lmobjectives_core::denoise::ul2::{DenoiserKind, DenoiserParams};
use lmobjectives_core::rng::{RowKeys, Streams, purpose};

fn time(label: &str, tokens: usize, mut f: impl FnMut(u64)) {
    let iters: u64 = std::env::var("ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for i in 0..iters {
            f(i);
        }
        best = best.min(t.elapsed().as_secs_f64() / iters as f64);
    }
    println!(
        "{label}: {:.1} us/batch, {:.2} ns/token",
        best * 1e6,
        best * 1e9 / tokens as f64
    );
}

fn main() {
    let rows = 32usize;
    let data: Vec<Vec<i64>> = (0..rows)
        .map(|r| {
            (0..568)
                .map(|i| 5 + ((r * 568 + i) as i64 * 7919) % 30_000)
                .collect()
        })
        .collect();
    t5_throughput(&data);
    bart_throughput(&data);
}

/// T5 span corruption of 32 rows of 568 tokens (inputs of 512).
fn t5_throughput(data: &[Vec<i64>]) {
    let sentinels: Vec<i64> = (0..100).map(|k| 30_621 - k).collect();
    let denoisers = [DenoiserParams {
        kind: DenoiserKind::Spans {
            noise_density: 0.15,
            mean_span: 3.0,
        },
        mode_token: None,
    }];
    let t5 = Seq2SeqConfig::new(&Seq2SeqParams {
        vocab_size: 30_622,
        eos_token_id: 3,
        pad_token_id: 0,
        decoder_start_token_id: 0,
        sentinel_ids: &sentinels,
        denoisers: &denoisers,
        weights: &[1.0],
        input_length: 512,
        random_roll: false,
        per_batch: false,
        purpose: purpose("t5"),
    })
    .unwrap();
    let slices: Vec<&[i64]> = data.iter().map(|r| r.as_slice()).collect();
    for threads in [1usize, 2] {
        time(
            &format!("t5 32x568 threads={threads}"),
            data.len() * 568,
            |i| {
                let keys = RowKeys::Batch { index: i };
                let job = Seq2SeqJob::new(&t5, &slices, Widths::default(), false, 0, 0, &keys, i)
                    .unwrap();
                std::hint::black_box(job.run::<i64>(threads).unwrap());
            },
        );
    }
}

/// BART noising (span-poisson text infilling, sentence permutation) of 32 rows of 510 tokens.
fn bart_throughput(data: &[Vec<i64>]) {
    let table: Vec<bool> = (0..30_522).map(|i| i % 4 != 0).collect();
    let short: Vec<&[i64]> = data.iter().map(|r| &r[..510]).collect();
    let bart = BartConfig::new(&BartParams {
        vocab_size: 30_522,
        bos_token_id: 2,
        eos_token_id: 3,
        pad_token_id: 0,
        mask_token_id: 4,
        decoder_start_token_id: 3,
        special_token_ids: &[1],
        word_starts: Some(&table),
        full_stop_ids: &[1012],
        mask_ratio: 0.3,
        random_ratio: 0.1,
        insert_ratio: 0.0,
        rotate_ratio: 0.0,
        permute_sentence_ratio: 1.0,
        poisson_lambda: 3.0,
        mask_length: MaskLength::SpanPoisson,
        replace_length: 1,
        add_special_tokens: true,
        random_tokens: Default::default(),
    })
    .unwrap();
    for threads in [1usize, 2] {
        time(
            &format!("bart 32x512 threads={threads}"),
            data.len() * 512,
            |i| {
                let keys = RowKeys::Batch { index: i };
                let job = BartJob::new(
                    &bart,
                    &short,
                    None,
                    Widths::default(),
                    Streams::new(0, 0, 0),
                    &keys,
                )
                .unwrap();
                std::hint::black_box(job.run::<i64>(threads).unwrap());
            },
        );
    }
}
