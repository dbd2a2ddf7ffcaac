//! Probe of the NSP/SOP index build over a corpus directory written by
//! `tools/measure_corpus_scale.py --keep`:
//! `cargo run --release --example pair_index_scale -- DIR [THREADS]`.
//! Reads the two offsets arrays into memory (the ids are never read: only their number), builds
//! the NSP index of pass 0 with seed 0 and prints the time, the CPU time and the instance count.

use std::time::Instant;

use lmobjectives_core::pairs::{Corpus, PairParams, Task, build_index};

/// A 1-D little-endian int64 `.npy` file's values.
fn read_i64(path: &std::path::Path) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[header..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(args.get(1).expect("usage: pair_index_scale DIR [THREADS]"));
    let threads: usize = args.get(2).map_or(0, |s| s.parse().unwrap());
    let so = read_i64(&dir.join("sentence_offsets.npy"));
    let dof = read_i64(&dir.join("document_offsets.npy"));
    let units = vec![(); so[so.len() - 1] as usize];
    let corpus = Corpus::new(&units[..], &so, &dof).unwrap();
    let t = Instant::now();
    let index = build_index(&corpus, &PairParams::new(Task::Nsp), 0, 0, threads).unwrap();
    println!(
        "{} tokens, {} instances: {:.3} s",
        units.len(),
        index.len(),
        t.elapsed().as_secs_f64()
    );
}
