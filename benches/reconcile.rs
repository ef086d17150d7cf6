//! Decisions per second of the pure `reconcile` function over 100,000 environments in a
//! realistic mix of situations (in sync, within grace, remediating, backing off, alarmed,
//! diverged, unreachable). Run: `cargo bench --bench reconcile`.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gitstate::core::{Assessment, CommitId, EnvState, Policy, Status, reconcile};
use jiff::Timestamp;

const ENVS: usize = 100_000;

struct Case {
    expected: CommitId,
    assessment: Assessment,
    prior: Option<EnvState>,
}

fn cases() -> (Vec<Case>, Policy, Timestamp) {
    let policy =
        Policy { grace: Duration::from_secs(60), settle: Duration::from_secs(30), ..Policy::default() };
    let start = Timestamp::from_second(1_800_000_000).unwrap();
    let mixes: [&[Status]; 6] = [
        &[Status::InSync, Status::InSync],
        &[Status::InSync, Status::Behind],
        &[Status::Ahead],
        &[Status::Diverged, Status::InSync],
        &[Status::Unreachable],
        &[Status::InSync],
    ];
    let mut out = Vec::with_capacity(ENVS);
    for i in 0..ENVS {
        let expected = CommitId::parse(&format!("{:040x}", i % 97 + 1)).unwrap();
        let assessment = Assessment::of_statuses(mixes[i % mixes.len()].iter().copied());
        // Walk each environment through a few passes so priors hold incidents, attempts and alarms.
        let mut prior = None;
        for step in 0..(i % 5) as i64 {
            let t = Timestamp::from_second(1_800_000_000 - 4000 + step * 700).unwrap();
            prior = Some(reconcile(expected, &assessment, prior.as_ref(), &policy, t).state);
        }
        out.push(Case { expected, assessment, prior });
    }
    (out, policy, start)
}

fn bench(c: &mut Criterion) {
    let (cases, policy, now) = cases();
    let mut g = c.benchmark_group("reconcile");
    g.throughput(Throughput::Elements(ENVS as u64));
    g.sample_size(20);
    g.bench_function("100k_environments", |b| {
        b.iter(|| {
            for case in &cases {
                black_box(reconcile(case.expected, &case.assessment, case.prior.as_ref(), &policy, now));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
