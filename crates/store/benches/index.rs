//! The in-memory index at scale: a synthetic index of 10 million chunks in
//! packs of 32 chunks, decoded from its (encrypted) index-file form and
//! sorted, then probed. Prints a Markdown table for BENCHMARKS.md.
//! Run: `cargo bench -p nightshift-store --bench index [CHUNKS]`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::time::Instant;

use nightshift_store::{Blob, BlobKind, ChunkId, Crypto, Index, IndexFile, MasterKey, PackId};

fn main() {
    let chunks: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000_000);
    let per_pack = 32;
    let id = |n: u32| ChunkId::of(&n.to_le_bytes());
    let started = Instant::now();
    let mut file = IndexFile::default();
    for pack in 0..chunks.div_ceil(per_pack) {
        let blobs = (pack * per_pack..((pack + 1) * per_pack).min(chunks))
            .map(|n| Blob {
                id: id(n),
                kind: BlobKind::Data,
                compressed: true,
                offset: 8 + (n % per_pack) * 1_000_000,
                stored_len: 1_000_000,
                raw_len: 2_000_000,
            })
            .collect();
        file.packs
            .push((PackId(*ChunkId::of(&pack.to_be_bytes()).as_bytes()), blobs));
    }
    let crypto = Crypto::sealed(&MasterKey::generate());
    let encoded = file.encode(&crypto);
    drop(file);
    let generated = started.elapsed();

    let started = Instant::now();
    let decoded = IndexFile::decode(&encoded, &crypto).expect("decodes");
    let index = Index::from_files([decoded]);
    let load = started.elapsed();
    drop(encoded);

    let probes = 1_000_000u32;
    let started = Instant::now();
    let mut found = 0;
    for n in 0..probes {
        // Half present, half absent.
        let n = if n % 2 == 0 { n % chunks } else { chunks + n };
        found += usize::from(index.contains(&id(n)));
    }
    let lookup = started.elapsed();
    assert_eq!(found, probes as usize / 2);

    let per_chunk = index.memory_bytes() as f64 / index.len() as f64;
    println!("(generated in {:.1}s)", generated.as_secs_f64());
    println!("| index of {} chunks | figure |\n|---|---|", index.len());
    println!("| memory per chunk (entries + pack ids) | {per_chunk:.1} bytes |");
    println!(
        "| memory in all | {:.0} MiB |",
        index.memory_bytes() as f64 / (1 << 20) as f64
    );
    println!("| decode index file + sort | {:.2} s |", load.as_secs_f64());
    println!(
        "| lookup (half hits, half misses, includes hashing the probe) | {:.0} ns |",
        lookup.as_nanos() as f64 / f64::from(probes)
    );
    println!("| peak resident set of the whole run | {} |", peak_rss());
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
