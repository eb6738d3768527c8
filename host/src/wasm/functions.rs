//! Edge functions: `wasi:http` components (a Spin HTTP component, or any
//! component that exports `wasi:http/incoming-handler`) that `sluice serve`
//! hosts itself, as `wasmtime serve` does, so the same component runs under
//! Spin or under Sluice.
//!
//! Invariants:
//! - every request gets a fresh instance, made from a pre-instantiated
//!   component (`ProxyPre`) in the pooling allocator, so no state leaks
//!   between requests and instantiation costs microseconds;
//! - an instance has a memory cap and a time limit, sees only the
//!   environment its configuration names (secrets only where granted), and
//!   has no files, sockets or arguments;
//! - outbound HTTP goes only where its allow-list lets it
//!   ([`crate::wasm::outbound`]: checked after DNS, pinned to the checked
//!   address, HTTPS too).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::http::{self, Uri};
use http_body_util::BodyExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::engine::Secrets;
use crate::engine::redact::Redactor;
use crate::wasm::builtin;
use crate::wasm::outbound::AllowList;
use crate::wasm::runtime::{Ticker, compile_cached, pooling, precompiled};

/// Resources (requests, bodies, streams, fields) one request's instance may
/// hold at once.
const MAX_RESOURCES: usize = 10_000;
/// Bytes of header fields one `fields` resource may hold.
const MAX_FIELDS_BYTES: usize = 64 * 1024;

/// One function as the configuration describes it (`[functions.NAME]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// The component file (relative to the configuration file).
    pub component: PathBuf,
    /// Environment variables it sees; a value `${secret:NAME}` is resolved
    /// by the host, if `secrets` grants `NAME`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secrets its environment may reference.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Where it may send HTTP requests: `scheme://host[:port]`, where the
    /// host may start with `*.` and the port may be `*` (default: the
    /// scheme's).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Serve it without a bearer token (a webhook that authenticates its
    /// callers itself). Otherwise the caller needs a token granted the
    /// function, and the component never sees that token.
    #[serde(default)]
    pub public: bool,
    /// Linear memory one request's instance may grow to, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Time one request may take (`30s`, `2m`).
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

fn default_memory_mib() -> u64 {
    128
}
fn default_timeout() -> String {
    "30s".into()
}

/// Why a request to a function failed; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Every instance slot is taken.
    #[error("function '{0}' is at its limit of concurrent requests; retry shortly")]
    Busy(String),
    /// The request ran out of time.
    #[error("function '{0}' did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The component trapped or broke the `wasi:http` contract.
    #[error("function '{0}' failed: {1}")]
    Failed(String, String),
}

/// The hosted functions, by name.
pub struct Functions {
    functions: BTreeMap<String, Arc<Function>>,
    permits: Arc<Semaphore>,
    _ticker: Option<Arc<Ticker>>,
}

/// One hosted function.
pub struct Function {
    /// Its name (the route is `/fn/{name}`).
    pub name: String,
    /// Whether it is served without a token.
    pub public: bool,
    /// Hex sha256 of its component.
    pub sha256: String,
    pre: ProxyPre<FnState>,
    env: Vec<(String, String)>,
    /// Hides the values of the secrets its environment holds in what the
    /// host logs or answers about it.
    redactor: Redactor,
    outbound: Arc<AllowList>,
    memory_bytes: usize,
    timeout: Duration,
}

impl Functions {
    /// No functions.
    pub fn none() -> Self {
        Functions {
            functions: BTreeMap::new(),
            permits: Arc::new(Semaphore::new(0)),
            _ticker: None,
        }
    }

    /// Compiles (or loads from `cache_dir`) every configured function;
    /// paths are relative to `base`. At most `max_concurrent` requests run
    /// at once, across all functions.
    pub fn load(
        configs: &BTreeMap<String, FunctionConfig>,
        base: &Path,
        cache_dir: Option<&Path>,
        secrets: &Secrets,
        max_concurrent: u32,
    ) -> Result<Self> {
        if configs.is_empty() {
            return Ok(Self::none());
        }
        let max_memory = configs.values().map(|c| c.memory_mib).max().unwrap_or(0) << 20;
        let engine = engine(max_concurrent, max_memory as usize)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        let mut functions = BTreeMap::new();
        for (name, c) in configs {
            let f = load_one(&engine, &linker, name, c, base, cache_dir, secrets)
                .with_context(|| format!("function '{name}'"))?;
            functions.insert(name.clone(), Arc::new(f));
        }
        Ok(Functions {
            functions,
            permits: Arc::new(Semaphore::new(max_concurrent as usize)),
            _ticker: Some(Ticker::start(&engine)?),
        })
    }

    /// The function called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Function>> {
        self.functions.get(name).cloned()
    }

    /// Names of the hosted functions.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    /// Serves `req` (whose URI is already the path the function sees) with
    /// a fresh instance of `f`.
    pub async fn call(
        &self,
        f: &Arc<Function>,
        req: http::Request<Body>,
    ) -> Result<http::Response<Body>, Failure> {
        // Wait briefly for a slot rather than failing at once under a burst.
        let permit =
            tokio::time::timeout(Duration::from_secs(5), self.permits.clone().acquire_owned())
                .await
                .map_err(|_| Failure::Busy(f.name.clone()))?
                .map_err(|_| Failure::Busy(f.name.clone()))?;
        f.clone().handle(req, permit).await
    }
}

fn engine(max_concurrent: u32, max_memory: usize) -> Result<Engine> {
    let mut config = sluice_wasm_engine::config();
    // Instances come from pre-reserved slots, so a request pays for no
    // mmap/munmap of its memories, tables or stack: the cold part of a
    // request is only the copy-on-write of the component's data.
    config.allocation_strategy(pooling(max_concurrent.max(1), max_memory.max(1 << 20)));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating the engine for functions")
}

fn load_one(
    engine: &Engine,
    linker: &Linker<FnState>,
    name: &str,
    c: &FunctionConfig,
    base: &Path,
    cache_dir: Option<&Path>,
    secrets: &Secrets,
) -> Result<Function> {
    if !sluice_pipeline::pipeline::valid_secret_name(name) {
        anyhow::bail!("a function name may hold only letters, digits, '_', '-' and '.'");
    }
    let path = base.join(&c.component);
    let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let sha256 = hex::encode(Sha256::digest(&wasm));
    let shipped = (sha256 == builtin::EDGE_SHA256)
        .then(|| precompiled(engine, builtin::EDGE_CODE))
        .and_then(|c| {
            c.inspect_err(|e| tracing::debug!("compiling the edge function: {e:#}"))
                .ok()
        });
    let component = match shipped {
        Some(c) => c,
        None => compile_cached(engine, cache_dir, &wasm, &sha256)
            .with_context(|| format!("{} is not a valid component", path.display()))?,
    };
    let pre = linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .context("the component imports more than wasi:http and WASI offer")?;
    let pre = ProxyPre::new(pre)
        .map_err(anyhow::Error::from)
        .context("the component does not export wasi:http/incoming-handler")?;
    let redactor = Redactor::new(
        c.secrets
            .iter()
            .filter_map(|n| Some((n.as_str(), secrets.get(n)?))),
    );
    let mut env = Vec::new();
    for (k, v) in &c.env {
        let value = sluice_pipeline::pipeline::resolve_secrets(
            &serde_json::Value::String(v.clone()),
            &c.secrets,
            &|n| secrets.get(n),
        )
        .with_context(|| {
            format!("env {k} (a function's secrets are granted by `secrets = [...]` under [functions.{name}])")
        })?;
        env.push((k.clone(), value.as_str().unwrap_or_default().to_string()));
    }
    let timeout = crate::engine::parse_interval(&c.timeout)
        .context("timeout")?
        .ok_or_else(|| anyhow::anyhow!("timeout must be more than 0s"))?;
    Ok(Function {
        name: name.to_string(),
        public: c.public,
        sha256,
        pre,
        env,
        redactor,
        outbound: Arc::new(AllowList::parse(&c.allowed_outbound_hosts)?),
        memory_bytes: (c.memory_mib << 20) as usize,
        timeout,
    })
}

impl Function {
    async fn handle(
        self: Arc<Self>,
        req: http::Request<Body>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<http::Response<Body>, Failure> {
        let failed = |e: String| Failure::Failed(self.name.clone(), self.redactor.text(&e));
        let mut wasi = WasiCtx::builder();
        wasi.envs(&self.env);
        // Host memory a request may pin through resources and header
        // fields is bounded too, not only the guest's linear memory.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_FIELDS_BYTES);
        let mut store = Store::new(
            self.pre.engine(),
            FnState {
                wasi: wasi.build(),
                http,
                table,
                limits: StoreLimitsBuilder::new()
                    .memory_size(self.memory_bytes)
                    .trap_on_grow_failure(true)
                    .build(),
                outbound: Outbound {
                    function: self.name.clone(),
                    allow: self.outbound.clone(),
                    redactor: self.redactor.clone(),
                },
            },
        );
        store.limiter(|s| &mut s.limits);
        // Yield to tokio every tick, so a busy guest shares the worker;
        // the timeout below bounds the whole request.
        store.epoch_deadline_async_yield_and_update(1);

        let req = req.map(|body| {
            body.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
        });
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let (incoming, out) = {
            let mut http = store.data_mut().http();
            let incoming = http
                .new_incoming_request(Scheme::Http, req)
                .map_err(|e| failed(format!("{e:#}")))?;
            let out = http
                .new_response_outparam(sender)
                .map_err(|e| failed(format!("{e:#}")))?;
            (incoming, out)
        };
        let pre = self.pre.clone();
        let limit = self.timeout;
        let name = self.name.clone();
        let redactor = self.redactor.clone();
        let task = tokio::spawn(async move {
            let _permit = permit;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, out)
                    .await
            };
            // Covers the response body too: the instance lives until the
            // handler returns.
            let result = match tokio::time::timeout(limit, run).await {
                Ok(r) => r.map_err(|e| Some(format!("{e:#}"))),
                // Out of time.
                Err(_) => Err(None),
            };
            if let Err(e) = &result {
                // Once the headers are out this is the only trace of a body
                // cut short.
                tracing::warn!(
                    "function '{name}': {}",
                    redactor.text(e.as_deref().unwrap_or("timed out"))
                );
            }
            result
        });
        match tokio::time::timeout(limit, receiver).await {
            Err(_) => {
                task.abort();
                Err(Failure::Timeout(self.name.clone(), limit))
            }
            Ok(Ok(Ok(response))) => Ok(response.map(Body::new)),
            Ok(Ok(Err(code))) => Err(failed(format!("it answered with error {code:?}"))),
            // The instance ended without setting a response: say why.
            Ok(Err(_)) => Err(match task.await {
                Ok(Ok(())) => failed("it returned without setting a response".into()),
                Ok(Err(Some(trap))) => failed(trap),
                Ok(Err(None)) => Failure::Timeout(self.name.clone(), limit),
                Err(e) => failed(format!("the request task ended: {e}")),
            }),
        }
    }
}

/// Per-request store data.
struct FnState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
    outbound: Outbound,
}

impl WasiView for FnState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for FnState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// Sends a function's outbound requests through its allow-list.
struct Outbound {
    function: String,
    allow: Arc<AllowList>,
    redactor: Redactor,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let allow = self.allow.clone();
        let function = self.function.clone();
        let redactor = self.redactor.clone();
        Box::new(async move {
            let addr = match allow.admit(request.uri()).await {
                Ok(a) => a,
                Err(refusal) => {
                    tracing::warn!(
                        "function '{function}': outbound request to {} refused: {}",
                        redactor.text(&request.uri().to_string()),
                        redactor.text(&refusal.reason)
                    );
                    // Read what the guest is still sending first: dropped
                    // unread, the body's stream would close under it, and
                    // it would see "stream closed" instead of the refusal.
                    let rest = http_body_util::Limited::new(request.into_body(), 16 << 20);
                    let _ = tokio::time::timeout(Duration::from_secs(5), rest.collect()).await;
                    return Err(refusal.http_code());
                }
            };
            if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
                // TLS to the address that was checked, the certificate
                // verified for the name.
                let host = request
                    .uri()
                    .host()
                    .unwrap_or_default()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                return crate::wasm::outbound::send_pinned(request, options, addr, &host).await;
            }
            {
                // Connect to the address that was checked, not to whatever
                // a second lookup returns (the Host header keeps the name).
                let mut parts = request.uri().clone().into_parts();
                parts.authority = Some(
                    addr.to_string()
                        .parse()
                        .map_err(|_| wasmtime_wasi_http::Error::HttpRequestUriInvalid)?,
                );
                *request.uri_mut() = Uri::from_parts(parts)
                    .map_err(|_| wasmtime_wasi_http::Error::HttpRequestUriInvalid)?;
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped edge function starts without compiling only while the
    /// functions' engine accepts the code the build compiled for it.
    #[test]
    fn the_edge_function_loads_from_the_code_the_build_compiled() {
        let engine = engine(4, 64 << 20).unwrap();
        precompiled(&engine, builtin::EDGE_CODE).unwrap();
        let wasm = std::fs::read(env!("SLUICE_EDGE_WASM")).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&wasm)), builtin::EDGE_SHA256);
    }
}
