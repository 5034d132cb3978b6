//! Chooses chunker parameters by measurement: chunks two generations of a
//! directory tree with several FastCDC settings and reports, for each, the
//! chunk count, the unique bytes of the first generation, and the bytes the
//! second generation adds. Used for BENCHMARKS.md ("chunker parameters").
//! Run: `cargo run --release -p nightshift-store --example chunking -- GEN1 GEN2`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the example prints its measurements"
)]

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use nightshift_store::{ChunkId, Chunker, ChunkerConfig, DEFAULT_CHUNKER};

const KIB: u32 = 1024;

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Unique chunk ids and their total size, added to `seen`.
fn chunk_all(paths: &[PathBuf], config: ChunkerConfig, seen: &mut HashSet<ChunkId>) -> (u64, u64) {
    let mut chunker = Chunker::new(config);
    let (mut new_chunks, mut new_bytes) = (0, 0);
    for path in paths {
        let Ok(file) = File::open(path) else { continue };
        for chunk in chunker.chunks(file) {
            let chunk = chunk.expect("read");
            if seen.insert(ChunkId::of(&chunk)) {
                new_chunks += 1;
                new_bytes += chunk.len() as u64;
            }
        }
    }
    (new_chunks, new_bytes)
}

fn main() {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let [gen1, gen2] = args.as_slice() else {
        eprintln!("usage: chunking GEN1_DIR GEN2_DIR");
        std::process::exit(2);
    };
    let (first, second) = (files(gen1), files(gen2));
    let settings = [
        ("64/256/2048 KiB", 64, 256, 2048),
        ("128/512/4096 KiB (nightshift default)", 128, 512, 4096),
        ("256/1024/8192 KiB", 256, 1024, 8192),
        ("512/1024/8192 KiB (restic's)", 512, 1024, 8192),
    ];
    println!(
        "| FastCDC min/avg/max | chunks, gen 1 | unique MiB, gen 1 | chunks added by gen 2 | MiB added by gen 2 | index memory, gen 1 |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, min, avg, max) in settings {
        let config = ChunkerConfig {
            min_size: min * KIB,
            avg_size: avg * KIB,
            max_size: max * KIB,
            ..DEFAULT_CHUNKER
        };
        let mut seen = HashSet::new();
        let (chunks, bytes) = chunk_all(&first, config, &mut seen);
        let (added_chunks, added_bytes) = chunk_all(&second, config, &mut seen);
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "| {label} | {chunks} | {:.1} | {added_chunks} | {:.1} | {:.2} MiB |",
            mib(bytes),
            mib(added_bytes),
            mib(chunks * 44)
        );
    }
}
