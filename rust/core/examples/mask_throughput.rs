//! Quick throughput probe of the MLM kernel: `cargo run --release --example mask_throughput`.

use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use lmobjectives_core::batch::{PadSpec, Ragged, dense_offsets};
use lmobjectives_core::masking::{MlmConfig, MlmParams, PURPOSE, TokenMasks, UnitSpec, mask_batch};
use lmobjectives_core::rng::{RowKeys, Streams};

fn main() {
    let (rows, cols) = (32usize, 512usize);
    let ids: Vec<i64> = (0..rows * cols)
        .map(|i| 5 + (i as i64 * 7919) % 30_000)
        .collect();
    let offsets = dense_offsets(rows, cols);
    let r = Ragged::new("input_ids", &ids, &offsets).unwrap();
    let specials = [1i64, 2, 3];
    // UNIT=word measures whole-word masking (every 4th id continues a word).
    let word_starts: Vec<bool> = (0..30_522).map(|i| i % 4 != 0).collect();
    let unit = std::env::var("UNIT").unwrap_or_default();
    let cfg = MlmConfig::new(&MlmParams {
        unit: if unit == "word" {
            UnitSpec::Word
        } else {
            UnitSpec::Token
        },
        word_starts: Some(&word_starts),
        ..MlmParams::new(30_522, 4, 0, &specials)
    })
    .unwrap();
    for threads in [1usize, 2] {
        let iters: u64 = std::env::var("ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2000);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for i in 0..iters {
                let b = mask_batch::<i64, i64>(
                    &cfg,
                    &r,
                    &TokenMasks::default(),
                    &PadSpec::default(),
                    &Streams::new(0, 0, PURPOSE),
                    &RowKeys::Batch { index: i },
                    threads,
                )
                .unwrap();
                std::hint::black_box(b);
            }
            best = best.min(t.elapsed().as_secs_f64() / iters as f64);
        }
        println!(
            "threads={threads}: {:.1} us/batch, {:.2} ns/token",
            best * 1e6,
            best * 1e9 / (rows * cols) as f64
        );
    }
}
