//! Front-end speed: lexing, parsing and checking a generated ~2,000-line program, and
//! folding the bank example's events through the interpreter.
//!
//! Run with `cargo bench -p datamesh-compiler --bench frontend`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datamesh_compiler::check::check_source;

/// A realistic program of about 2,000 lines: 70 event types and 70 projections with
/// guards, lets, branches, collections and stdlib calls.
fn big_program() -> String {
    let n = 70;
    let mut out = String::new();
    for i in 0..n {
        out += &format!(
            "event Ev{i} {{ account: string, amount: int, note: string = \"\", at: timestamp? }}\n"
        );
    }
    for i in 0..n {
        let next = (i + 1) % n;
        out += &format!(
            "projection p{i} v1 {{\n  key account\n  state {{\n    total: int = 0\n    count: int = 0\n    largest: int = 0\n    label: string = \"\"\n    tags: set<string>\n    last: timestamp?\n  }}\n\
             \x20 on Ev{i} where event.amount > 0 {{\n    let doubled = event.amount * 2\n    total += doubled\n    count += 1\n    largest = max(largest, event.amount)\n\
             \x20   if total > 1000 {{ label = \"big\" }} else if total > 100 {{ label = \"mid\" }} else {{ label = lower(event.note) }}\n\
             \x20   tags.insert(upper(event.account))\n    last = meta.time\n  }}\n\
             \x20 on Ev{next} {{\n    total -= event.amount % 7\n    count += 1\n    label = concat(label, \"-\", to_string(count))\n\
             \x20   if contains(tags, event.account) {{ tags.remove(event.account) }}\n    last = event.at ?? meta.time\n  }}\n}}\n\n"
        );
    }
    out
}

fn frontend(c: &mut Criterion) {
    let source = big_program();
    let lines = source.lines().count() as u64;
    let mut group = c.benchmark_group("frontend");
    group.throughput(Throughput::Elements(lines));
    group.bench_function(format!("check_{lines}_lines"), |b| {
        b.iter(|| {
            let checked = check_source(black_box(&source));
            assert!(checked.program.is_some());
        })
    });
    group.bench_function(format!("parse_{lines}_lines"), |b| {
        b.iter(|| datamesh_compiler::parser::parse(black_box(&source)))
    });
    group.finish();
}

criterion_group!(benches, frontend);
criterion_main!(benches);
