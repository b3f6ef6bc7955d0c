//! Criterion benchmarks of the hot paths: decode, a rule call by batch size,
//! window aggregation, and the whole pipeline from a file to no sink.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edge::config::{DecodeConfig, EngineConfig};
use edge::decode::Decoder;
use edge::engine::batch::BatchBuilder;
use edge::engine::router::Router;
use edge::engine::window::WindowOperator;
use edge::engine::Pipeline;
use edge::metrics::Metrics;
use edge::model::Format;
use edge::model::Interner;
use edge::runtime::bindings::types::StateBlob;
use edge::source::FileSource;
use edge_benches::{events, load, records, runtime};
use edge_tests::guests;
use std::hint::black_box;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The allocator of the `edge` binary, so that the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn decode(c: &mut Criterion) {
    let input = records(10_000);
    let decoder = Decoder::new(Format::Json, &DecodeConfig::default()).unwrap();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(input.len() as u64));
    group.bench_function("json", |b| {
        b.iter(|| {
            let mut strings = Interner::default();
            for r in &input {
                let _ = black_box(decoder.decode(r, &mut strings));
            }
        })
    });
    group.finish();
}

fn rule_call(c: &mut Criterion) {
    let rt = runtime();
    let (txns, strings) = events(20_000);
    let mut group = c.benchmark_group("rule-call");
    for guest in [guests::FRAUD, guests::ANOMALY] {
        let mut rule = load(&rt, guest);
        let key = edge::engine::key::Key::of(rule.manifest().state_key.as_ref().unwrap(), &[]);
        let mut state = rule.new_state();
        for size in [16usize, 128, 1024] {
            let chunks: Vec<&[edge::model::Txn]> = txns.chunks(size).take(16).collect();
            group.throughput(Throughput::Elements((chunks.len() * size) as u64));
            group.bench_function(format!("{}/batch-{size}", rule.name()), |b| {
                let mut builder = BatchBuilder::default();
                let mut handles = Vec::new();
                b.iter(|| {
                    for chunk in &chunks {
                        builder.build(chunk, &strings);
                        builder.set_state_keys(chunk, key, &strings);
                        let mut states = StateBlob {
                            bytes: Vec::new(),
                            ends: Vec::new(),
                        };
                        handles.clear();
                        state.lend(
                            builder.key_reads(&strings),
                            &mut states.bytes,
                            &mut states.ends,
                            &mut handles,
                        );
                        let _ = black_box(rule.on_events(&mut state, builder.batch(), &states, 0));
                    }
                })
            });
        }
    }
    group.finish();
}

fn windows(c: &mut Criterion) {
    let rt = runtime();
    let (txns, strings) = events(20_000);
    let mut group = c.benchmark_group("windows");
    group.throughput(Throughput::Elements(txns.len() as u64));
    for guest in [guests::MERCHANT, guests::COMPLIANCE, guests::LIFECYCLE] {
        let rule = load(&rt, guest);
        let spec = rule.manifest().windows[0].clone();
        group.bench_function(format!("{}/aggregate-and-fire", spec.name), |b| {
            b.iter(|| {
                let mut op = WindowOperator::new(&spec);
                for t in &txns {
                    op.add(t, i64::MIN, &strings);
                }
                let mut fired = Vec::new();
                op.fire(i64::MAX, &strings, &mut fired);
                black_box(fired.len())
            })
        });
    }
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    // Ten hours of event time: windows open and fire as in a long run, not
    // only in the final flush, and start-up is a small share.
    let input = records(1_000_000);
    let count = input.len() as u64;
    std::fs::write(
        &path,
        input
            .into_iter()
            .flat_map(|r| r.into_iter().chain([b'\n']))
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let rt = runtime();
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(count));
    for workers in [1, 2] {
        let name = format!("file-five-rule-sets-no-sink-workers-{workers}");
        group.bench_function(name, |b| {
            // Only the run is timed: loading the rule sets and tearing the
            // pipeline down are start-up and exit, not throughput.
            b.iter_custom(|iterations| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iterations {
                    let rules = guests::RULE_SETS.iter().map(|g| load(&rt, g)).collect();
                    let metrics = Arc::new(Metrics::new());
                    let config = EngineConfig {
                        workers,
                        ..EngineConfig::default()
                    };
                    let mut p = Pipeline::new(
                        config,
                        Box::new(FileSource::open(&path, false).unwrap()),
                        Decoder::new(Format::Json, &DecodeConfig::default()).unwrap(),
                        rules,
                        Router::new(Vec::new(), metrics.clone()),
                        metrics,
                        Arc::new(AtomicBool::new(false)),
                    )
                    .unwrap();
                    let started = std::time::Instant::now();
                    black_box(p.run().unwrap().events);
                    total += started.elapsed();
                    drop(p);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, rule_call, windows, pipeline);
criterion_main!(benches);
