//! `dmc bench`: folds synthetic events through a program with the JIT and with the
//! interpreter and prints their throughput and ratio.
//!
//! Invariant: the events are a deterministic function of the program and the count
//! (a fixed-seed PRNG), values are chosen so nothing traps (small positive numbers,
//! present optionals, empty collections), and key-like strings come from a bounded set
//! so documents are updated as well as created.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datamesh_compiler::codegen::{JitFold, compile};
use datamesh_compiler::exec::Meta;
use datamesh_compiler::exec::engine::FoldEngine;
use datamesh_compiler::interp::Fold;
use datamesh_compiler::ir::{Program, Type};
use datamesh_stdlib::Value;

use crate::{Style, load_program};

/// Distinct strings a synthetic string field takes.
const DISTINCT_STRINGS: u64 = 10_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: fast, deterministic, plenty for synthetic data.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn small(&mut self) -> i64 {
        i64::try_from(self.next() % 1000).unwrap_or(0) + 1
    }
}

fn synth_value(ty: &Type, rng: &mut Rng, time: i64) -> Value {
    match ty {
        Type::Int => Value::Int(rng.small()),
        Type::Float => Value::Float(rng.small() as f64 / 4.0),
        Type::Bool => Value::Bool(rng.next().is_multiple_of(2)),
        Type::String => Value::str(format!("k{}", rng.next() % DISTINCT_STRINGS)),
        Type::Timestamp => Value::Timestamp(time),
        Type::Duration => Value::Duration(rng.small() * 1_000_000),
        Type::Optional(inner) => synth_value(inner, rng, time),
        other => other.zero_value(),
    }
}

/// The synthetic events: event type, row, envelope.
fn synthesise(program: &Program, count: usize) -> Vec<(usize, Vec<Value>, Meta)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let types = program.events.len().max(1);
    let stream: Arc<str> = Arc::from("bench");
    (0..count)
        .map(|i| {
            let event = usize::try_from(rng.next() % types as u64).unwrap_or(0);
            let time = 1_714_550_400_000_000 + i64::try_from(i).unwrap_or(0) * 1_000_000;
            let row = program
                .events
                .get(event)
                .map(|e| {
                    e.fields
                        .iter()
                        .map(|f| synth_value(&f.ty, &mut rng, time))
                        .collect()
                })
                .unwrap_or_default();
            let meta = Meta {
                time,
                stream: stream.clone(),
                ..Meta::default()
            };
            (event, row, meta)
        })
        .collect()
}

/// Folds the events and returns the elapsed time and the number of faults.
fn time_fold(
    engine: &mut dyn FoldEngine,
    events: &[(usize, Vec<Value>, Meta)],
) -> (Duration, usize) {
    let start = Instant::now();
    let mut faults = 0;
    for (event, row, meta) in events {
        faults += engine.apply_local(*event, row, meta).len();
    }
    (start.elapsed(), faults)
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// `dmc bench FILE [--events N]`.
pub fn bench(
    file: &Path,
    count: usize,
    style: Style,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let (_, program) = match load_program(file, style, err) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let start = Instant::now();
    if let Err(e) = compile(&program) {
        let _ = writeln!(err, "error: {e}");
        return 1;
    }
    let compile_time = start.elapsed();
    let projections = program.projections.len().max(1);
    let _ = writeln!(
        out,
        "compile: {:.3} ms for {} projection(s), {:.3} ms per projection",
        compile_time.as_secs_f64() * 1e3,
        program.projections.len(),
        compile_time.as_secs_f64() * 1e3 / projections as f64
    );
    let events = synthesise(&program, count);
    let mut jit = match JitFold::new(&program) {
        Ok(j) => j,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return 1;
        }
    };
    let (jit_time, jit_faults) = time_fold(&mut jit, &events);
    let mut interp = Fold::new(&program);
    let (interp_time, interp_faults) = time_fold(&mut interp, &events);
    let (j, i) = (rate(count, jit_time), rate(count, interp_time));
    let _ = writeln!(out, "events: {count}");
    let _ = writeln!(
        out,
        "jit:    {j:>14.0} events/s ({:.3} s)",
        jit_time.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "interp: {i:>14.0} events/s ({:.3} s)",
        interp_time.as_secs_f64()
    );
    let _ = writeln!(out, "jit/interp: {:.1}x", j / i.max(1e-9));
    let agree = jit.snapshot() == FoldEngine::snapshot(&interp) && jit_faults == interp_faults;
    let _ = writeln!(
        out,
        "faults: {jit_faults}; engines agree: {}",
        if agree { "yes" } else { "NO" }
    );
    u8::from(!agree)
}
