//! How long one component takes to compile with each of wasmtime's compilers (Cranelift, the
//! optimising one; Winch, the baseline one), with the engine settings faas uses.
//!
//! `cargo run --release -p faas-bench --example compile-time -- target/wasm/wasm32-wasip2/release/hello.wasm [runs]`

use std::time::Instant;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, Strategy};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: compile-time <component.wasm> [runs]");
    let runs: usize = args.next().map_or(Ok(5), |n| n.parse())?;
    let bytes = std::fs::read(&path)?;
    for (name, strategy, parallel) in [
        ("cranelift", Strategy::Cranelift, true),
        ("cranelift-1thread", Strategy::Cranelift, false),
        ("winch", Strategy::Winch, true),
        ("winch-1thread", Strategy::Winch, false),
    ] {
        let mut config = Config::new();
        config.strategy(strategy).wasm_component_model(true).epoch_interruption(true).parallel_compilation(parallel);
        let engine = Engine::new(&config)?;
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                Component::new(&engine, &bytes).expect("compiles");
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{name:>18}: p50 {:7.1} ms  min {:7.1} ms  ({} KB wasm)",
            times[runs / 2],
            times[0],
            bytes.len() / 1024
        );
    }
    Ok(())
}
