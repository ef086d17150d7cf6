//! Parsing what targets answer and summing observations up: the per-instance work of a
//! pass, in-process. Run: `cargo bench --bench parse`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gitstate::core::{Assessment, InstanceObservation, Status, TargetObservation};
use gitstate_http::parse_body;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn bench(c: &mut Criterion) {
    let meta = format!(
        r#"{{"schema":1,"sha":"{SHA}","ref":"refs/heads/environments/production","environment":"production","built_at":"2026-11-24T06:00:00Z"}}"#
    );
    let spring = format!(
        r#"{{"git":{{"branch":"main","commit":{{"id":{{"abbrev":"0123456","full":"{SHA}"}},"time":"2026-11-24T06:00:00Z"}}}},"build":{{"version":"1.2.3"}}}}"#
    );
    let plain = format!("{SHA}\n");
    let mut g = c.benchmark_group("parse_body");
    g.throughput(Throughput::Elements(1));
    g.bench_function("deployment_meta", |b| {
        b.iter(|| black_box(parse_body(black_box(meta.as_bytes()), None)))
    });
    g.bench_function("spring_boot_full", |b| {
        b.iter(|| black_box(parse_body(black_box(spring.as_bytes()), None)))
    });
    g.bench_function("plain_text", |b| b.iter(|| black_box(parse_body(black_box(plain.as_bytes()), None))));
    g.finish();

    let statuses = [Status::InSync, Status::InSync, Status::Behind, Status::InSync, Status::Unreachable];
    let targets: Vec<TargetObservation> = (0..1000)
        .map(|i| {
            let inst = InstanceObservation {
                id: format!("https://t{i}.example.com/.well-known/deployment-meta.json"),
                status: statuses[i % statuses.len()],
                actual: Some(SHA.into()),
                commits_behind: None,
                commits_ahead: None,
                error: None,
                pending_commits: None,
                unexpected_commits: None,
                compare_url: None,
                elapsed_ms: 3,
            };
            TargetObservation::from_instances(format!("t{i}"), "http".into(), vec![inst])
        })
        .collect();
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("assess_1000_targets", |b| b.iter(|| black_box(Assessment::of(black_box(&targets)))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
