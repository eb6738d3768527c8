//! The wasmtime runtime: one engine, compiled components cached by content,
//! and stores that are bounded in memory and time.
//!
//! Invariants:
//! - a component is compiled at most once per content hash and engine; the
//!   compiled form is cached on disk and only ever produced by this process
//!   (never accepted from elsewhere), which is what makes loading it sound;
//!   the one exception is the built-in connectors' code, compiled by this
//!   binary's own build and embedded in it, used only when this engine
//!   accepts it (same wasmtime, settings and CPU features);
//! - every store has a memory cap and an epoch deadline, so a component that
//!   loops or allocates without end traps instead of hanging or exhausting
//!   the host; a trap fails that call only;
//! - with a memory budget (`sluice serve`), the linear memory of all stores
//!   together stays within it: growth waits a while for room, then traps
//!   with [`NoRoom`], which a face reports as "busy, retry" (503).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::wasm::bindings::sluice::connector0_1_0::{host, types};
use crate::wasm::bindings::sluice::connector0_2_0::network;
use crate::wasm::bindings::{
    Planner, PlannerIndices, Records, RecordsIndices, Source, SourceIndices, Splitter,
    SplitterIndices,
};
use crate::wasm::builtin::Builtin;
use crate::wasm::capability::HostState;
use crate::wasm::network::{HasNetwork, NetworkView};

/// How often the epoch advances.
const TICK: Duration = Duration::from_millis(10);

/// Limits every store gets.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory a component may grow to.
    pub memory_bytes: usize,
    /// Wall-clock time one call into a component may take.
    pub call_timeout: Duration,
    /// Instance slots reserved up front by the pooling allocator, for a
    /// long-running process that instantiates connectors per request;
    /// `None`: memories are mapped per instance (a one-shot CLI run).
    pub pool: Option<u32>,
    /// Linear memory all stores of the runtime may hold together
    /// (`None`: only the per-store cap).
    pub memory_budget: Option<usize>,
    /// How long a store waits for a free pool slot before the work fails
    /// as busy.
    pub slot_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 1 << 30,
            call_timeout: Duration::from_secs(600),
            pool: None,
            memory_budget: None,
            slot_wait: Duration::from_secs(60),
        }
    }
}

/// Per-store data: WASI (with nothing granted), limits and host capabilities.
pub struct StoreData {
    /// The pool slot this store holds, given back when it is dropped.
    _slot: Option<Slot>,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
    /// The host capabilities this component was granted.
    pub host: HostState,
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The engine, with its epoch ticker, and the component cache.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<StoreData>>,
    cache_dir: Option<PathBuf>,
    limits: Limits,
    /// The pooling allocator's instance slots, counted so that a store
    /// waits for a free one instead of failing to instantiate.
    slots: Option<Arc<Slots>>,
    /// The memory budget all stores share, if any.
    budget: Option<Arc<Budget>>,
    /// Built-in connectors already loaded, by name.
    builtins: Arc<std::sync::Mutex<std::collections::HashMap<&'static str, Loaded>>>,
    _ticker: Arc<Ticker>,
}

/// How long a growing memory waits for room in the budget before it traps.
const BUDGET_WAIT: Duration = Duration::from_secs(30);

/// The service has no room for this work now: every connector instance
/// slot stayed taken, or the memory budget of all instances is spent.
/// Nothing is wrong with the request; retry it later.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NoRoom(pub String);

/// Free instance slots of the pooling allocator.
struct Slots {
    /// How long a store waits for one.
    wait: Duration,
    free: std::sync::Mutex<u32>,
    freed: std::sync::Condvar,
}

/// One slot, taken until dropped.
struct Slot(Arc<Slots>);

impl Slots {
    fn new(n: u32, wait: Duration) -> Self {
        Slots {
            wait,
            free: std::sync::Mutex::new(n),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Takes a slot, waiting a while for one (stores are made on blocking
    /// threads, never on the async workers).
    fn take(self: &Arc<Self>) -> Result<Slot> {
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let (mut free, waited) = self
            .freed
            .wait_timeout_while(free, self.wait, |f| *f == 0)
            .unwrap_or_else(|p| p.into_inner());
        if waited.timed_out() && *free == 0 {
            return Err(NoRoom(format!(
                "every connector instance slot stayed busy for {:?}; retry, or raise connector_slots",
                self.wait
            ))
            .into());
        }
        *free -= 1;
        Ok(Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// Bytes of linear memory all stores may still take.
struct Budget {
    total: usize,
    /// How long a growing memory waits for room before it traps.
    wait: Duration,
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Budget {
    fn new(total: usize, wait: Duration) -> Self {
        Budget {
            total,
            wait,
            free: std::sync::Mutex::new(total),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Takes `bytes`, waiting a while for others to give some back.
    fn take(&self, bytes: usize) -> bool {
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let (mut free, _) = self
            .freed
            .wait_timeout_while(free, self.wait, |f| *f < bytes)
            .unwrap_or_else(|p| p.into_inner());
        if *free < bytes {
            return false;
        }
        *free -= bytes;
        true
    }

    fn give(&self, bytes: usize) {
        if bytes > 0 {
            *self.free.lock().unwrap_or_else(|p| p.into_inner()) += bytes;
            self.freed.notify_all();
        }
    }
}

/// A store's resource limiter: its own caps, and its share of the
/// runtime's memory budget, given back when the store is dropped.
struct Limiter {
    caps: StoreLimits,
    budget: Option<Arc<Budget>>,
    /// Bytes this store holds of the budget.
    charged: usize,
    /// Linear memory the instance holds, all memories together (a memory's
    /// first size counts as its first growth).
    held: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if !self.caps.memory_growing(current, desired, maximum)? {
            return Ok(false);
        }
        self.held += desired.saturating_sub(current);
        if let Some(budget) = &self.budget {
            let more = desired.saturating_sub(current);
            if !budget.take(more) {
                return Err(wasmtime::Error::new(NoRoom(format!(
                    "the memory budget of all connector instances ({} MiB) stayed spent for {:?}; retry, or raise connector_memory_budget_mib",
                    budget.total >> 20,
                    budget.wait
                ))));
            }
            self.charged += more;
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.caps.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.caps.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.caps.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.caps.instances()
    }

    fn tables(&self) -> usize {
        self.caps.tables()
    }

    fn memories(&self) -> usize {
        self.caps.memories()
    }
}

impl Drop for Limiter {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give(self.charged);
        }
    }
}

/// Advances an engine's epoch every [`TICK`] until dropped.
pub(crate) struct Ticker(Arc<AtomicBool>);

impl Ticker {
    /// Starts the ticker thread for `engine`.
    pub(crate) fn start(engine: &Engine) -> Result<Arc<Ticker>> {
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    e.increment_epoch();
                }
            })?;
        Ok(Arc::new(Ticker(stop)))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A compiled connector, ready to instantiate.
#[derive(Clone)]
pub struct Loaded {
    pre: InstancePre<StoreData>,
    exports: Arc<Exported>,
    /// Hex sha256 of the component's bytes.
    pub sha256: String,
    /// The interfaces it imports (the capabilities it may ask for).
    pub imports: Arc<Vec<String>>,
}

/// Where a component exports what it offers.
enum Exported {
    /// Arrow IPC batches (`source`), a `planner` if it plans its own
    /// batches, and a `splitter` if it may split one into parts.
    Arrow(
        SourceIndices,
        Option<PlannerIndices>,
        Option<SplitterIndices>,
    ),
    /// JSON records (`records`, WIT 0.3.0), which the host decodes.
    Records(RecordsIndices),
}

/// A connector's exports in one instance.
pub enum Exports {
    /// Arrow IPC batches, perhaps planned, perhaps in parts.
    Arrow(Source, Option<Planner>, Option<Splitter>),
    /// JSON records.
    Records(Records),
}

impl StoreData {
    /// The linear memory the instance holds now: memory never shrinks, so
    /// this is also the most it has held.
    pub fn memory_bytes(&self) -> usize {
        self.limits.held
    }
}

impl Runtime {
    /// Creates the engine. `cache_dir` holds compiled components.
    pub fn new(cache_dir: Option<PathBuf>, limits: Limits) -> Result<Self> {
        let mut config = sluice_wasm_engine::config();
        // Profiling (`SLUICE_PERF_MAP=1 perf record ...`): compiled guest
        // functions are named in /tmp/perf-<pid>.map, so a profile shows
        // where the guest's time goes, not bare addresses.
        if std::env::var_os("SLUICE_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(slots) = limits.pool {
            config.allocation_strategy(pooling(slots, limits.memory_bytes));
        }
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // Interface by interface: the world's own `add_to_linker` would add
        // wasi:io a second time (the network interface uses its streams).
        types::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |d: &mut StoreData| {
            &mut d.host
        })?;
        host::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |d: &mut StoreData| &mut d.host)?;
        network::add_to_linker::<_, HasNetwork>(&mut linker, |d: &mut StoreData| NetworkView {
            network: &mut d.host.network,
            table: &mut d.table,
        })?;

        Ok(Runtime {
            _ticker: Ticker::start(&engine)?,
            slots: limits
                .pool
                .map(|n| Arc::new(Slots::new(n, limits.slot_wait))),
            budget: limits
                .memory_budget
                .map(|b| Arc::new(Budget::new(b, BUDGET_WAIT))),
            engine,
            linker: Arc::new(linker),
            cache_dir,
            limits,
            builtins: Arc::default(),
        })
    }

    /// The limits stores get.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles (or loads from the cache) the component in `wasm`.
    pub fn load(&self, wasm: &[u8]) -> Result<Loaded> {
        let sha256 = hex::encode(Sha256::digest(wasm));
        let component = self.compile_cached(wasm, &sha256)?;
        self.link(component, sha256)
    }

    /// Checks `component` against the connector world and prepares it for
    /// instantiation.
    fn link(&self, component: Component, sha256: String) -> Result<Loaded> {
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the component does not fit the sluice:connector world with the capabilities Sluice offers")?;
        let exports = match SourceIndices::new(&pre) {
            Ok(source) => Exported::Arrow(
                source,
                PlannerIndices::new(&pre).ok(),
                SplitterIndices::new(&pre).ok(),
            ),
            Err(_) => RecordsIndices::new(&pre).map(Exported::Records).map_err(|_| {
                anyhow!("the component exports neither sluice:connector/source (Arrow batches) nor sluice:connector/records (JSON records)")
            })?,
        };
        let imports = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        Ok(Loaded {
            pre,
            exports: Arc::new(exports),
            sha256,
            imports: Arc::new(imports),
        })
    }

    /// [`Runtime::load`] for a connector the binary carries: from the code
    /// its build compiled when this engine accepts it (no compiling, even
    /// with an empty cache), else compiled and cached as any component.
    /// Loaded once per runtime: a long-running service does not deserialize
    /// and type-check it again for every request.
    pub fn load_builtin(&self, builtin: &'static Builtin) -> Result<Loaded> {
        if let Some(l) = self
            .builtins
            .lock()
            .ok()
            .and_then(|m| m.get(builtin.name).cloned())
        {
            return Ok(l);
        }
        let component = match precompiled(&self.engine, builtin.compiled) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(
                    "compiling the built-in '{}' connector: its precompiled code does not fit: {e:#}",
                    builtin.name
                );
                self.compile_cached(builtin.wasm, builtin.sha256)?
            }
        };
        let loaded = self.link(component, builtin.sha256.to_string())?;
        if let Ok(mut m) = self.builtins.lock() {
            m.insert(builtin.name, loaded.clone());
        }
        Ok(loaded)
    }

    fn compile_cached(&self, wasm: &[u8], sha256: &str) -> Result<Component> {
        compile_cached(&self.engine, self.cache_dir.as_deref(), wasm, sha256)
    }

    /// The name the compiled form of the component whose hex sha256 is
    /// `sha256` goes by, in the cache and in a service's state: its content
    /// and this engine's configuration, so that code another wasmtime or
    /// other settings compiled is never looked up.
    pub fn compiled_name(&self, sha256: &str) -> String {
        compiled_name(&self.engine, sha256)
    }

    /// The component whose hex sha256 is `sha256`, from the cache, if it is
    /// there and this engine accepts it.
    pub fn load_cached(&self, sha256: &str) -> Option<Loaded> {
        let component = cached(&self.engine, self.cache_dir.as_deref()?, sha256)?;
        self.link(component, sha256.to_string()).ok()
    }

    /// The component whose hex sha256 is `sha256` from `compiled`, code a
    /// Sluice service compiled and kept in its own state (see
    /// [`crate::wasm::connectors`]) under [`Runtime::compiled_name`]; it is
    /// cached as if compiled here. An error when this engine refuses it
    /// (another CPU, say): the caller compiles the component instead.
    pub fn load_kept(&self, sha256: &str, compiled: &[u8]) -> Result<Loaded> {
        let component = match &self.cache_dir {
            Some(dir) => {
                let path = dir.join(self.compiled_name(sha256));
                write_atomically(dir, &path, compiled)?;
                deserialize(&self.engine, &path)
            }
            None => deserialize_kept(&self.engine, compiled),
        };
        self.link(component?, sha256.to_string())
    }

    /// The compiled form of `loaded`, for [`Runtime::load_kept`].
    pub fn compiled(&self, loaded: &Loaded) -> Result<Vec<u8>> {
        Ok(loaded.pre.component().serialize()?)
    }

    /// Where compiled components are cached, if anywhere.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// A new store for one run of a component, with `host` capabilities.
    /// With the pooling allocator, it first waits (a while) for one of the
    /// pool's slots, so a burst of work queues rather than fails.
    pub fn store(&self, host: HostState) -> Result<Store<StoreData>> {
        let slot = match &self.slots {
            Some(slots) => Some(slots.take()?),
            None => None,
        };
        let data = StoreData {
            _slot: slot,
            // No preopened directories, sockets, environment or arguments.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: Limiter {
                caps: StoreLimitsBuilder::new()
                    .memory_size(self.limits.memory_bytes)
                    // Core instances of one component: componentize-py's
                    // CPython makes 14 (componentize-js's 4, Rust's 1-3).
                    .instances(32)
                    .tables(64)
                    .memories(4)
                    .trap_on_grow_failure(true)
                    .build(),
                budget: self.budget.clone(),
                charged: 0,
                held: 0,
            },
            host,
        };
        let mut store = Store::new(&self.engine, data);
        store.limiter(|d| &mut d.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.deadline_ticks());
        Ok(store)
    }

    /// Epoch ticks one call may take.
    pub fn deadline_ticks(&self) -> u64 {
        (self.limits.call_timeout.as_millis() / TICK.as_millis()).max(1) as u64
    }
}

impl Loaded {
    /// Instantiates the component in `store`: what it exports.
    pub fn instantiate(&self, store: &mut Store<StoreData>) -> Result<Exports> {
        let instance = self
            .pre
            .instantiate(&mut *store)
            .map_err(anyhow::Error::from)
            .context("instantiating the component")?;
        Ok(match self.exports.as_ref() {
            Exported::Arrow(source, planner, splitter) => Exports::Arrow(
                source.load(&mut *store, &instance)?,
                match planner {
                    Some(p) => Some(p.load(&mut *store, &instance)?),
                    None => None,
                },
                match splitter {
                    Some(s) => Some(s.load(&mut *store, &instance)?),
                    None => None,
                },
            ),
            Exported::Records(records) => Exports::Records(records.load(&mut *store, &instance)?),
        })
    }

    /// Whether it plans its own batches (exports `planner`).
    pub fn plans(&self) -> bool {
        matches!(self.exports.as_ref(), Exported::Arrow(_, Some(_), _))
    }

    /// Whether it may split a planned batch into parts (exports
    /// `splitter`).
    pub fn splits(&self) -> bool {
        matches!(self.exports.as_ref(), Exported::Arrow(_, Some(_), Some(_)))
    }

    /// Whether it hands over JSON records (exports `records`) rather than
    /// Arrow batches.
    pub fn hands_records(&self) -> bool {
        matches!(self.exports.as_ref(), Exported::Records(_))
    }
}

/// The pooling allocator with `slots` component instances (and room for
/// the core instances, memories, tables and async stacks they hold), each
/// memory up to `max_memory` bytes: instances come from reserved slots, so
/// one pays for no mmap/munmap, only the copy-on-write of its data.
pub(crate) fn pooling(slots: u32, max_memory: usize) -> InstanceAllocationStrategy {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 16)
        .total_memories(slots * 2)
        .total_tables(slots * 8)
        .total_stacks(slots)
        .max_memory_size(max_memory);
    InstanceAllocationStrategy::Pooling(pool)
}

/// Components this process compiled: each is seconds of CPU, which loads
/// from the cache, from a service's state or from the binary avoid.
static COMPILED: AtomicU64 = AtomicU64::new(0);

/// How many components this process has compiled.
pub fn components_compiled() -> u64 {
    COMPILED.load(Ordering::Relaxed)
}

fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component> {
    let component = Component::new(engine, wasm)
        .map_err(anyhow::Error::from)
        .context("compiling the component")?;
    COMPILED.fetch_add(1, Ordering::Relaxed);
    Ok(component)
}

/// See [`Runtime::compiled_name`].
fn compiled_name(engine: &Engine, sha256: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{sha256}-{:016x}.cwasm", h.finish())
}

/// The component whose hex sha256 is `sha256` from the cache in `dir`, if
/// it is there and `engine` accepts it.
fn cached(engine: &Engine, dir: &Path, sha256: &str) -> Option<Component> {
    let path = dir.join(compiled_name(engine, sha256));
    if !path.exists() {
        return None;
    }
    deserialize(engine, &path)
        .inspect_err(|e| tracing::warn!("ignoring unusable cache entry {}: {e:#}", path.display()))
        .ok()
}

/// Compiles `wasm` (whose hex sha256 is `sha256`) for `engine`, or loads
/// the compiled form from `cache_dir`, where it is cached by content and
/// engine configuration.
pub(crate) fn compile_cached(
    engine: &Engine,
    cache_dir: Option<&Path>,
    wasm: &[u8],
    sha256: &str,
) -> Result<Component> {
    let Some(dir) = cache_dir else {
        return compile(engine, wasm);
    };
    if let Some(c) = cached(engine, dir, sha256) {
        return Ok(c);
    }
    let path = dir.join(compiled_name(engine, sha256));
    let component = compile(engine, wasm)?;
    if let Err(e) = write_atomically(dir, &path, &component.serialize()?) {
        tracing::warn!(
            "could not cache the compiled component in {}: {e:#}",
            dir.display()
        );
    }
    Ok(component)
}

/// A component's code as this binary's build compiled it (a built-in's
/// `compiled`), if `engine` accepts it.
#[expect(
    unsafe_code,
    reason = "deserializing compiled code is unsafe; only code built into this binary is read"
)]
pub(crate) fn precompiled(engine: &Engine, compiled: &'static [u8]) -> Result<Component> {
    anyhow::ensure!(
        !compiled.is_empty(),
        "this binary was built without it (a cross build)"
    );
    // SAFETY: the bytes were produced by `Engine::precompile_component` in
    // this binary's build script, with the wasmtime this binary links, and
    // are part of the binary itself. `deserialize` checks them against this
    // engine (wasmtime version, settings, CPU features) and refuses a
    // mismatch, which the caller answers by compiling.
    let component = unsafe { Component::deserialize(engine, compiled)? };
    release_pages(compiled);
    Ok(component)
}

/// Lets the kernel drop the resident pages of `bytes`, read-only data of
/// this binary the process has just read and will not soon read again:
/// wasmtime runs a deserialized component from its own copy, so the
/// original (31 MB for the files connector) would otherwise stay resident
/// beside the copy for as long as the process runs. A later read faults the
/// pages back in from the executable, unchanged.
#[cfg(target_os = "linux")]
#[expect(
    unsafe_code,
    reason = "madvise on pages of the binary's own read-only data"
)]
fn release_pages(bytes: &'static [u8]) {
    // SAFETY: sysconf only reads a setting of the system.
    let Ok(page) = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) else {
        return;
    };
    if page == 0 {
        return;
    }
    // Whole pages only: 4 KiB on most machines, 16 or 64 KiB on some ARM
    // ones, where a 4 KiB-aligned range would be refused.
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end > start {
        // SAFETY: `start..end` holds only whole pages inside `bytes`, which
        // is `'static` read-only data mapped from the executable (never
        // written, so no page holds a private copy): MADV_DONTNEED drops
        // them and a later access reads the same bytes from the file again.
        // It changes no memory a reference could observe; a failure (an
        // unusual mapping) only leaves the pages resident.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn release_pages(_bytes: &'static [u8]) {}

/// Loads a compiled component this process wrote to its own cache.
#[expect(
    unsafe_code,
    reason = "deserializing compiled code is unsafe; only our own cache is read"
)]
fn deserialize(engine: &Engine, path: &Path) -> Result<Component> {
    // SAFETY: the file was produced by `Component::serialize` of this engine
    // configuration (its name carries the engine's compatibility hash) and is
    // written atomically into a cache directory only Sluice writes to.
    unsafe { Ok(Component::deserialize_file(engine, path)?) }
}

/// Loads compiled code a Sluice service kept in its state.
#[expect(
    unsafe_code,
    reason = "deserializing compiled code is unsafe; only code Sluice compiled and kept in its own state is read"
)]
fn deserialize_kept(engine: &Engine, compiled: &[u8]) -> Result<Component> {
    // SAFETY: as for `deserialize`: the bytes are `Component::serialize` of
    // this engine configuration (their name carries its compatibility
    // hash), written by `ConnectorStore` into the service's state, which
    // only the service writes (uploads are WebAssembly, never compiled
    // code). `deserialize` refuses code for another wasmtime, other
    // settings or missing CPU features.
    unsafe { Ok(Component::deserialize(engine, compiled)?) }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cold start rests on this: if the runtime's engine settings drift from
    /// the ones the build precompiles with, every built-in would be compiled
    /// again on first use, silently; this fails instead.
    #[test]
    fn the_built_in_connectors_load_from_the_code_the_build_compiled() {
        for pool in [None, Some(2)] {
            let runtime = Runtime::new(
                None,
                Limits {
                    pool,
                    ..Limits::default()
                },
            )
            .unwrap();
            for b in crate::wasm::builtin::all() {
                precompiled(&runtime.engine, b.compiled)
                    .unwrap_or_else(|e| panic!("'{}' (pool {pool:?}): {e:#}", b.name));
                runtime.load_builtin(b).unwrap();
            }
        }
    }

    #[test]
    fn a_store_waits_for_a_free_slot() {
        let slots = Arc::new(Slots::new(1, Duration::from_secs(60)));
        let first = slots.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = {
            let slots = slots.clone();
            std::thread::spawn(move || {
                let second = slots.take().unwrap();
                tx.send(()).unwrap();
                drop(second);
            })
        };
        // The second waits while the first is held ...
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(first);
        // ... and gets the slot once it is given back.
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        waiting.join().unwrap();
        assert_eq!(*slots.free.lock().unwrap(), 1);
    }

    #[test]
    fn stores_share_the_memory_budget_and_give_it_back() {
        let budget = Arc::new(Budget::new(4 << 20, Duration::from_millis(50)));
        let limiter = |budget: &Arc<Budget>| Limiter {
            caps: StoreLimitsBuilder::new().memory_size(16 << 20).build(),
            budget: Some(budget.clone()),
            charged: 0,
            held: 0,
        };
        use wasmtime::ResourceLimiter;
        let mut a = limiter(&budget);
        assert!(a.memory_growing(0, 3 << 20, None).unwrap());
        let mut b = limiter(&budget);
        // Only 1 MiB is left: b waits, then is refused with NoRoom.
        let e = b.memory_growing(0, 2 << 20, None).unwrap_err();
        assert!(e.downcast_ref::<NoRoom>().is_some(), "{e:?}");
        // Once a is gone its bytes are b's.
        drop(a);
        assert!(b.memory_growing(0, 2 << 20, None).unwrap());
        drop(b);
        assert_eq!(*budget.free.lock().unwrap(), 4 << 20);
    }
}
