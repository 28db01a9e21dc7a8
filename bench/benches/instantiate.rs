//! The cost of one invocation of `hello`, without HTTP or sockets: `cargo bench -p faas-bench`.
//!
//! - `invoke/faas/{current_thread,multi_thread}`: through the real path a request takes after the
//!   data plane has accepted it: `Registry::lookup` + `Invoker::serve_http` (fresh `Store`, limits,
//!   concurrency permit, spawned task, instantiate from the pooling engine, call
//!   `wasi:http/incoming-handler`) and reading the response body to its end. Set up with the public
//!   API only, the way `server::run` does (SQLite store in a temp dir, `build_engine`, epoch ticker).
//! - `invoke/faas/{current_thread,multi_thread}/reuse`: the same with the function deployed with
//!   `reuse.max_uses` = 1,000,000: one warm instance serves every call (no instantiation).
//! - `invoke/wasmtime/{pooling,default}`: the same component called with bare wasmtime: a
//!   `ProxyPre` and a minimal store on the faas engine (`build_engine`: pooling allocator, memory
//!   kept resident) and on `Engine::default()` (on-demand allocation, wasmtime's default for
//!   embedders), inline on the benchmark's task. What faas adds on top of wasmtime is the
//!   difference between `invoke/faas/current_thread` and `invoke/wasmtime/pooling`.
//! - `instantiate-only/{pooling,default}`: a fresh store + `ProxyPre::instantiate_async` (and
//!   dropping both), no call: the floor of any instance-per-request design with this component.
//!
//! The component is `target/wasm/wasm32-wasip2/release/hello.wasm` (override with
//! `FAAS_BENCH_WASM`); build it with `cd functions && cargo build --release --target
//! wasm32-wasip2 --target-dir ../target/wasm`.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use faas_host::capabilities::workflow_handle::workflow_channel;
use faas_host::capabilities::{Capabilities, EventNotifier};
use faas_host::metrics::Metrics;
use faas_host::model::spec::DeploySpec;
use faas_host::registry::{DEFAULT_MAX_COMPONENT_BYTES, Registry};
use faas_host::runtime::engine::{CompileCache, EpochTicker, PoolSize, build_engine};
use faas_host::runtime::guest_io::DenyOutgoingHttp;
use faas_host::runtime::invoker::Invoker;
use http_body_util::{BodyExt as _, Empty};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::runtime::Runtime;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

const EXPECTED: &[u8] = b"Hello, world!";

fn wasm() -> Vec<u8> {
    let path = std::env::var_os("FAAS_BENCH_WASM").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm/wasm32-wasip2/release/hello.wasm"),
        PathBuf::from,
    );
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}; build it with `cd functions && cargo build --release --target wasm32-wasip2 --target-dir ../target/wasm`",
            path.display()
        )
    })
}

/// `GET /hello` with an empty body of type `B`.
fn request<B>(body: B) -> http::Request<B> {
    http::Request::get("/hello").header(http::header::HOST, "localhost").body(body).expect("a valid request")
}

/// faas as `server::run` wires it, minus the listeners.
struct Faas {
    registry: Arc<Registry>,
    invoker: Arc<Invoker>,
    _ticker: EpochTicker,
    _dir: tempfile::TempDir,
}

impl Faas {
    /// `reuse`: deploy with `reuse.max_uses` so high that one warm instance serves every call.
    async fn new(wasm: Vec<u8>, reuse: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let stores = faas_host::store::open(&format!("sqlite://{}/b.db", dir.path().display()))
            .await
            .expect("opening the store");
        let engine = build_engine(PoolSize::default()).expect("engine");
        let ticker = EpochTicker::start(engine.clone());
        let capabilities =
            Arc::new(Capabilities::new(stores.clone(), EventNotifier::new(), Default::default(), workflow_channel().0));
        let invoker = Arc::new(Invoker::new(&engine, Metrics::new(), capabilities).expect("invoker"));
        let cache = CompileCache::new(engine, &dir.path().join("cache")).expect("cache");
        let key = Arc::new(faas_host::model::secrets::SecretKey::from_bytes([0; 32]));
        let registry = Arc::new(
            Registry::open(stores.functions.clone(), cache, invoker.clone(), DEFAULT_MAX_COMPONENT_BYTES, key)
                .await
                .expect("registry"),
        );
        // Parsed as the API parses it, so spec fields added later keep their defaults.
        let mut spec = serde_json::json!({ "triggers": { "http": ["/hello"] } });
        if reuse {
            spec["reuse"] = serde_json::json!({ "max_uses": 1_000_000, "idle_timeout_ms": 3_600_000 });
        }
        let spec: DeploySpec = serde_json::from_value(spec).expect("a valid spec");
        registry.deploy("hello", spec, wasm, Default::default()).await.expect("deploying hello");
        Self { registry, invoker, _ticker: ticker, _dir: dir }
    }

    async fn invoke(&self) {
        let function = self.registry.lookup("/hello").expect("hello is routed");
        let response = self
            .invoker
            .serve_http(&function, request(axum::body::Body::empty()), "bench")
            .await
            .expect("hello answers");
        let body = response.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, EXPECTED);
    }
}

/// The least a wasi:http host needs: what `wasmtime serve` gives each request, minus stdio.
struct Bare {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: DenyOutgoingHttp,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Bare {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

fn bare_store(engine: &Engine) -> Store<Bare> {
    let mut store = Store::new(
        engine,
        Bare {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: DenyOutgoingHttp,
        },
    );
    // The faas engine has epoch interruption on (nothing advances the epoch here); without a
    // deadline the guest would be interrupted at once. No effect on the default engine.
    store.set_epoch_deadline(1 << 40);
    store
}

fn bare_pre(engine: &Engine, wasm: &[u8]) -> ProxyPre<Bare> {
    let component = Component::new(engine, wasm).expect("compiling hello");
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("linking wasi");
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).expect("linking wasi:http");
    ProxyPre::new(linker.instantiate_pre(&component).expect("instance pre")).expect("a wasi:http proxy")
}

/// One request through bare wasmtime, inline: instantiate, call the handler, read the body.
async fn bare_invoke(engine: &Engine, pre: &ProxyPre<Bare>) {
    let mut store = bare_store(engine);
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let mut http = store.data_mut().http();
    let req = http.new_incoming_request(Scheme::Http, request(Empty::<Bytes>::new())).expect("request");
    let out = http.new_response_outparam(sender).expect("outparam");
    let proxy = pre.instantiate_async(&mut store).await.expect("instantiate");
    proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await.expect("handle");
    let response = receiver.await.expect("a response").expect("not an error code");
    let body = response.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body, EXPECTED);
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

fn invoke(c: &mut Criterion) {
    let wasm = wasm();
    let mut group = c.benchmark_group("invoke");

    for (label, rt, reuse) in [
        ("current_thread", current_thread(), false),
        ("multi_thread", multi_thread(), false),
        ("current_thread/reuse", current_thread(), true),
        ("multi_thread/reuse", multi_thread(), true),
    ] {
        let faas = rt.block_on(Faas::new(wasm.clone(), reuse));
        rt.block_on(faas.invoke());
        group.bench_function(format!("faas/{label}"), |b| b.to_async(&rt).iter(|| faas.invoke()));
        // Drop the registry (and its pooled instances) inside the runtime that made it.
        rt.block_on(async move { drop(faas) });
    }

    let rt = current_thread();
    let pooling = build_engine(PoolSize::default()).expect("engine");
    for (label, engine) in [("pooling", pooling), ("default", Engine::default())] {
        let pre = bare_pre(&engine, &wasm);
        rt.block_on(bare_invoke(&engine, &pre));
        group.bench_function(format!("wasmtime/{label}"), |b| b.to_async(&rt).iter(|| bare_invoke(&engine, &pre)));
    }
    group.finish();
}

fn instantiate_only(c: &mut Criterion) {
    let wasm = wasm();
    let rt = current_thread();
    let mut group = c.benchmark_group("instantiate-only");
    let pooling = build_engine(PoolSize::default()).expect("engine");
    for (label, engine) in [("pooling", pooling), ("default", Engine::default())] {
        let pre = bare_pre(&engine, &wasm);
        group.bench_function(label, |b| {
            b.to_async(&rt).iter(|| async {
                let mut store = bare_store(&engine);
                black_box(pre.instantiate_async(&mut store).await.expect("instantiate"));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, invoke, instantiate_only);
criterion_main!(benches);
