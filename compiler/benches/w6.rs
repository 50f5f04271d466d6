//! Workload W6: fold throughput of the compiled handlers alone, in memory, over decoded
//! events. The bank program's `balances` and `totals` projections fold `Deposited` and
//! `Withdrawn` events (10,000 accounts, amounts 1..=1000) with the Cranelift JIT, the
//! reference interpreter and a hand-written Rust fold of the same logic; the compile
//! time of the projections is measured too. Criterion reports time per batch of
//! events; the throughput line gives events/s.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use datamesh_compiler::check::check_source;
use datamesh_compiler::codegen::{JitFold, compile};
use datamesh_compiler::exec::Meta;
use datamesh_compiler::interp::Fold;
use datamesh_compiler::ir::Program;
use datamesh_stdlib::Value;

const SOURCE: &str = r#"
event Deposited { account: string, amount: int }
event Withdrawn { account: string, amount: int }

projection balances v1 {
  key account
  state { owner: string = "", balance: int = 0, tx_count: int = 0, opened: timestamp? }
  on Deposited { balance += event.amount; tx_count += 1 }
  on Withdrawn { balance -= event.amount; tx_count += 1 }
}

projection totals v1 {
  state { accounts: int = 0, deposited: int = 0, largest: int = 0 }
  on Deposited where event.amount > 0 {
    deposited += event.amount
    largest = max(largest, event.amount)
  }
}
"#;

const EVENTS: usize = 100_000;
const ACCOUNTS: u64 = 10_000;

fn program() -> Program {
    check_source(SOURCE)
        .program
        .unwrap_or_else(|| std::process::abort())
}

/// Deterministic events: (type 0 = Deposited, 1 = Withdrawn, row).
fn events() -> Vec<(usize, Vec<Value>)> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let accounts: Vec<Value> = (0..ACCOUNTS)
        .map(|i| Value::str(format!("acc-{i}")))
        .collect();
    (0..EVENTS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let account = accounts[(state % ACCOUNTS) as usize].clone();
            let amount = Value::Int(((state >> 20) % 1000) as i64 + 1);
            (usize::from(state >> 63 == 1), vec![account, amount])
        })
        .collect()
}

/// A `balances` document as a Rust service would declare it.
#[derive(Default)]
struct Balance {
    owner: String,
    balance: i64,
    tx_count: i64,
    opened: Option<i64>,
}

/// The same logic as the two projections, written by hand, over the same documents.
#[derive(Default)]
struct HandFold {
    balances: HashMap<String, Balance>,
    accounts: i64,
    deposited: i64,
    largest: i64,
}

impl HandFold {
    fn apply(&mut self, event: usize, row: &[Value]) {
        let (Some(Value::Str(account)), Some(Value::Int(amount))) = (row.first(), row.get(1))
        else {
            return;
        };
        let doc = match self.balances.get_mut(&**account) {
            Some(d) => d,
            None => self.balances.entry(account.to_string()).or_default(),
        };
        let signed = if event == 0 { *amount } else { -*amount };
        doc.balance = doc.balance.checked_add(signed).unwrap_or(doc.balance);
        doc.tx_count += 1;
        if event == 0 && *amount > 0 {
            self.deposited += amount;
            self.largest = self.largest.max(*amount);
        }
    }
}

fn w6(c: &mut Criterion) {
    let program = program();
    let events = events();
    let meta = Meta {
        stream: Arc::from("s"),
        ..Meta::default()
    };
    let mut group = c.benchmark_group("w6");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(20);
    group.bench_function("jit", |b| {
        // Compiling is measured on its own below: each run starts from a fresh fold.
        b.iter_batched(
            || JitFold::new(&program).ok(),
            |fold| {
                let Some(mut fold) = fold else { return };
                for (event, row) in &events {
                    black_box(fold.apply_local(*event, row, &meta));
                }
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("interp", |b| {
        b.iter(|| {
            let mut fold = Fold::new(&program);
            for (event, row) in &events {
                black_box(fold.apply_local(*event, row, meta.clone()));
            }
        });
    });
    group.bench_function("hand_written_rust", |b| {
        b.iter(|| {
            let mut fold = HandFold::default();
            for (event, row) in &events {
                fold.apply(*event, row);
            }
            black_box((fold.balances.len(), fold.accounts));
            black_box(
                fold.balances
                    .get("acc-1")
                    .map(|b| (b.owner.len(), b.opened)),
            );
        });
    });
    group.finish();
    c.bench_function("w6_compile_two_projections", |b| {
        b.iter(|| black_box(compile(&program).is_ok()));
    });
}

criterion_group!(benches, w6);
criterion_main!(benches);
