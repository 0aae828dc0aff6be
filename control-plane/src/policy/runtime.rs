//! The wasmtime adapter: the sandbox policies run in, the cache of compiled
//! modules, and the checks a module passes at upload.
//!
//! - No capabilities: modules may import nothing (no WASI, no filesystem,
//!   network, environment or clock); the linker is empty. Everything a
//!   policy knows arrives in its input.
//! - CPU: epoch interruption. A ticker thread advances the engine's epoch
//!   every millisecond while a call is running; a call's deadline is its
//!   budget in ticks, counted from after instantiation. When the deadline
//!   comes, the call's thread's own CPU time decides
//!   (`CLOCK_THREAD_CPUTIME_ID`): a call that was only waiting for a
//!   core on a busy host gets the rest of its budget, one that used it
//!   traps. Wall-clock time is capped at [`WALL_CLOCK_FACTOR`] times the
//!   budget whatever happens, so a decision never waits long.
//! - Memory: the pooling allocator's slots are capped at the limit, and a
//!   resource limiter refuses (and traps on) any growth past it.
//! - Stack: `max_wasm_stack`.
//! - Speed: a module is compiled once per sha256 and kept as an
//!   [`InstancePre`]; each call instantiates a fresh instance from it in a
//!   pooled slot (copy-on-write memory images), so no state survives
//!   between calls. A returned slot is reset by zeroing just the pages the
//!   call dirtied (`PAGEMAP_SCAN`, up to [`MEMORY_KEEP_RESIDENT`]) rather
//!   than `madvise`, so the next call takes no page faults.

use super::decision::FailureCause;
use super::hook::Limits;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::{
    Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, ValType,
};

/// The exports every policy module has (ABI version 1).
pub const EXPORT_MEMORY: &str = "memory";
pub const EXPORT_ALLOC: &str = "argosy_alloc";
pub const EXPORT_EVALUATE: &str = "argosy_evaluate";

/// How many budgets of wall-clock time a call may take at most, however
/// little CPU it got (a host so busy that a policy cannot get its budget
/// of CPU in this time fails closed).
pub const WALL_CLOCK_FACTOR: u32 = 20;

/// A deadline far enough to never come (the epoch is added to it, so not
/// `u64::MAX`), until the budget starts after instantiation.
const NOT_YET: u64 = u64::MAX >> 2;

/// Compiled modules kept at most (policies are few; a replaced version
/// stays until evicted).
const CACHED_MODULES: usize = 256;

/// Why the policy runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("the Wasm policy runtime could not start: {0}")]
pub struct RuntimeError(String);

/// Why a module is refused at upload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    #[error("the module is {bytes} bytes, more than the {max} a policy may have")]
    TooLarge { bytes: usize, max: usize },
    #[error("the file is not a valid WebAssembly module: {0}")]
    Invalid(String),
    #[error(
        "the module imports {0}: policies get no host functions (no WASI, filesystem, network, environment or clock); build it for wasm32-unknown-unknown with the argosy-policy-sdk, which imports nothing"
    )]
    Imports(String),
    #[error(
        "the module does not export {name} ({expected}); policies export memory, argosy_alloc and argosy_evaluate (docs/policies.md)"
    )]
    MissingExport {
        name: &'static str,
        expected: &'static str,
    },
    #[error("the module's export {name} is {found}, expected {expected} (docs/policies.md)")]
    WrongExport {
        name: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error(
        "the module asks for {min_bytes} bytes of memory at start, more than the {cap_bytes} a policy may use"
    )]
    MemoryTooLarge { min_bytes: u64, cap_bytes: u64 },
    #[error("{0}")]
    Runtime(String),
}

/// A module compiled and ready to instantiate.
pub struct CompiledPolicy {
    pub sha256: String,
    pre: InstancePre<Sandbox>,
}

/// What a module that passed the upload checks is.
#[derive(Clone)]
pub struct Inspected {
    pub sha256: String,
    pub size_bytes: usize,
    pub compiled: Arc<CompiledPolicy>,
}

/// One call's answer bytes and how long it took (instantiation included).
#[derive(Debug, Clone)]
pub struct Called {
    pub result: Result<Vec<u8>, FailureCause>,
    pub elapsed: Duration,
    /// Whether the module grew its memory during the call (allowed up to
    /// the cap, but it costs the host two page-protection changes).
    pub grew_memory: bool,
}

/// The store data of one call: the memory limiter and the CPU clock.
struct Sandbox {
    memory_cap: usize,
    /// Set when the module tried to grow past the cap.
    refused_growth: bool,
    /// Set when the module grew its memory at all.
    grew_memory: bool,
    /// When the guest started running, by the wall clock and by the
    /// thread's CPU clock (`None` where the kernel does not say).
    started: Instant,
    cpu_started_ns: Option<u64>,
}

/// The calling thread's CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`,
/// read through the vDSO: tens of nanoseconds).
fn thread_cpu_ns() -> Option<u64> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(now.tv_sec)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(u64::try_from(now.tv_nsec).ok()?)
}

/// What to do when a call's epoch deadline comes: trap (`None`) if it
/// used its CPU budget or ran out of wall-clock time, or extend the
/// deadline by the CPU budget it has left, in whole ticks. Pure.
fn on_deadline(cpu_used: Option<Duration>, wall: Duration, budget: Duration) -> Option<u64> {
    let used = cpu_used?;
    if used >= budget || wall >= budget.saturating_mul(WALL_CLOCK_FACTOR) {
        return None;
    }
    let left_ms = (budget - used).as_millis().max(1);
    Some(u64::try_from(left_ms).unwrap_or(u64::MAX))
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // At instantiation `current` is 0: only later growth counts.
        if current > 0 && desired > current {
            self.grew_memory = true;
        }
        if desired > self.memory_cap {
            self.refused_growth = true;
            return Err(wasmtime::format_err!(
                "memory growth to {desired} bytes refused: the cap is {}",
                self.memory_cap
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Advances the engine's epoch every millisecond while calls run.
struct Ticker {
    active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: std::thread::Thread,
}

impl Ticker {
    fn start(engine: Engine) -> Result<Ticker, RuntimeError> {
        let active = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (active.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("policy-epoch".to_owned())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    if a.load(Ordering::Acquire) == 0 {
                        std::thread::park_timeout(Duration::from_millis(200));
                        continue;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    engine.increment_epoch();
                }
            })
            .map_err(|e| RuntimeError(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Ticker {
            active,
            stop,
            thread: handle.thread().clone(),
        })
    }

    fn running(&self) -> TickerGuard<'_> {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.thread.unpark();
        TickerGuard(self)
    }
}

struct TickerGuard<'a>(&'a Ticker);

impl Drop for TickerGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Bytes of a pooled memory slot reset by zeroing rather than `madvise`:
/// what a decision dirties (stack, data, a small heap) fits; a module that
/// dirtied more gives the rest back to the kernel, so a hostile one cannot
/// keep its whole memory cap resident in every slot.
const MEMORY_KEEP_RESIDENT: usize = 1024 * 1024;

/// Bytes of a pooled table slot reset by zeroing rather than `madvise`.
const TABLE_KEEP_RESIDENT: usize = 64 * 1024;

/// The hex sha256 of a module, its version id.
pub fn sha256_hex(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

/// Runs policy modules.
pub struct PolicyHost {
    engine: Engine,
    linker: Linker<Sandbox>,
    limits: Limits,
    modules: Mutex<HashMap<String, Arc<CompiledPolicy>>>,
    ticker: Ticker,
}

impl PolicyHost {
    pub fn new(limits: Limits) -> Result<PolicyHost, RuntimeError> {
        let memory_cap = usize::try_from(limits.memory_bytes)
            .map_err(|_| RuntimeError("the memory cap does not fit this machine".to_owned()))?;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(limits.concurrent_instances)
            .total_memories(limits.concurrent_instances)
            .total_tables(limits.concurrent_instances)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memory_size(memory_cap)
            // Reset a returned slot by zeroing only the pages the call
            // dirtied (found with the PAGEMAP_SCAN ioctl where the kernel
            // has it, 6.7+) instead of `madvise`: the pages stay mapped,
            // so the next call takes no page faults and no TLB shootdown.
            .linear_memory_keep_resident(memory_cap.min(MEMORY_KEEP_RESIDENT))
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .max_wasm_stack(limits.stack_bytes)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| RuntimeError(e.to_string()))?;
        let ticker = Ticker::start(engine.clone())?;
        Ok(PolicyHost {
            linker: Linker::new(&engine),
            engine,
            limits,
            modules: Mutex::new(HashMap::new()),
            ticker,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The upload checks: size, validity, no imports, the ABI's exports, a
    /// starting memory under the cap. Compiles and caches the module.
    pub fn inspect(&self, wasm: &[u8]) -> Result<Inspected, ModuleError> {
        if wasm.len() > self.limits.module_bytes {
            return Err(ModuleError::TooLarge {
                bytes: wasm.len(),
                max: self.limits.module_bytes,
            });
        }
        check_memory_size(wasm, self.limits.memory_bytes)?;
        let module =
            Module::new(&self.engine, wasm).map_err(|e| ModuleError::Invalid(first_line(&e)))?;
        let imports: Vec<String> = module
            .imports()
            .map(|i| format!("{}::{}", i.module(), i.name()))
            .collect();
        if !imports.is_empty() {
            return Err(ModuleError::Imports(imports.join(", ")));
        }
        check_interface(&module)?;
        let sha256 = sha256_hex(wasm);
        let compiled = self
            .prepare(sha256.clone(), &module)
            .map_err(|e| ModuleError::Runtime(e.to_string()))?;
        Ok(Inspected {
            sha256,
            size_bytes: wasm.len(),
            compiled,
        })
    }

    fn prepare(
        &self,
        sha256: String,
        module: &Module,
    ) -> Result<Arc<CompiledPolicy>, FailureCause> {
        let pre = self
            .linker
            .instantiate_pre(module)
            .map_err(|e| FailureCause::WrongInterface(first_line(&e)))?;
        let compiled = Arc::new(CompiledPolicy {
            sha256: sha256.clone(),
            pre,
        });
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if modules.len() >= CACHED_MODULES
            && let Some(evict) = modules.keys().next().cloned()
        {
            modules.remove(&evict);
        }
        modules.insert(sha256, compiled.clone());
        Ok(compiled)
    }

    /// The compiled module for `sha256`, if it is cached.
    pub fn cached(&self, sha256: &str) -> Option<Arc<CompiledPolicy>> {
        self.modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha256)
            .cloned()
    }

    /// Compiles stored bytes (already checked at upload) into the cache.
    pub fn load(&self, sha256: &str, wasm: &[u8]) -> Result<Arc<CompiledPolicy>, FailureCause> {
        if let Some(compiled) = self.cached(sha256) {
            return Ok(compiled);
        }
        if sha256_hex(wasm) != sha256 {
            return Err(FailureCause::Runtime(format!(
                "the stored module does not match its sha256 {sha256}; upload it again"
            )));
        }
        let module = Module::new(&self.engine, wasm).map_err(|e| {
            FailureCause::Runtime(format!("the module does not compile: {}", first_line(&e)))
        })?;
        self.prepare(sha256.to_owned(), &module)
    }

    /// Calls a module with `request` (the JSON envelope): a fresh instance,
    /// the input written through `argosy_alloc`, `argosy_evaluate` run
    /// under the budget, the answer read back. Blocking: run it off the
    /// async runtime.
    pub fn call(&self, policy: &CompiledPolicy, request: &[u8]) -> Called {
        let started = Instant::now();
        let _ticking = self.ticker.running();
        let mut store = Store::new(
            &self.engine,
            Sandbox {
                memory_cap: usize::try_from(self.limits.memory_bytes).unwrap_or(usize::MAX),
                refused_growth: false,
                grew_memory: false,
                started: Instant::now(),
                cpu_started_ns: None,
            },
        );
        store.limiter(|sandbox| sandbox);
        // No guest code runs before `run` sets the real deadline.
        store.set_epoch_deadline(NOT_YET);
        let budget = self.limits.budget;
        store.epoch_deadline_callback(move |context| {
            let sandbox = context.data();
            let cpu_used = sandbox
                .cpu_started_ns
                .zip(thread_cpu_ns())
                .map(|(start, now)| Duration::from_nanos(now.saturating_sub(start)));
            Ok(
                match on_deadline(cpu_used, sandbox.started.elapsed(), budget) {
                    Some(ticks) => wasmtime::UpdateDeadline::Continue(ticks),
                    None => wasmtime::UpdateDeadline::Interrupt,
                },
            )
        });
        let result = self.run(policy, &mut store, request);
        Called {
            result,
            elapsed: started.elapsed(),
            grew_memory: store.data().grew_memory,
        }
    }

    fn run(
        &self,
        policy: &CompiledPolicy,
        store: &mut Store<Sandbox>,
        request: &[u8],
    ) -> Result<Vec<u8>, FailureCause> {
        let limits = self.limits;
        let fail = |store: &Store<Sandbox>, error: wasmtime::Error| classify(store, &error, limits);
        let instance = match policy.pre.instantiate(&mut *store) {
            Ok(instance) => instance,
            Err(error) => {
                if error.is::<wasmtime::PoolConcurrencyLimitError>() {
                    return Err(FailureCause::Runtime(
                        "too many policy evaluations at once; retry".to_owned(),
                    ));
                }
                return Err(fail(store, error));
            }
        };
        // The budget counts from here: instantiation is the host's work.
        let ticks = u64::try_from(limits.budget.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        store.data_mut().started = Instant::now();
        store.data_mut().cpu_started_ns = thread_cpu_ns();
        store.set_epoch_deadline(ticks);
        let memory = instance
            .get_memory(&mut *store, EXPORT_MEMORY)
            .ok_or_else(|| FailureCause::WrongInterface("no exported memory".to_owned()))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut *store, EXPORT_ALLOC)
            .map_err(|e| FailureCause::WrongInterface(first_line(&e)))?;
        let evaluate = instance
            .get_typed_func::<(i32, i32), i64>(&mut *store, EXPORT_EVALUATE)
            .map_err(|e| FailureCause::WrongInterface(first_line(&e)))?;
        let len = i32::try_from(request.len())
            .map_err(|_| FailureCause::Runtime("the input is too large".to_owned()))?;
        let ptr = alloc.call(&mut *store, len).map_err(|e| fail(store, e))?;
        let start = usize::try_from(ptr).map_err(|_| {
            FailureCause::MalformedOutput(format!("argosy_alloc returned a negative pointer {ptr}"))
        })?;
        memory.write(&mut *store, start, request).map_err(|_| {
            FailureCause::MalformedOutput(format!(
                "argosy_alloc returned {ptr}, where {len} bytes do not fit in its memory"
            ))
        })?;
        let packed = evaluate
            .call(&mut *store, (ptr, len))
            .map_err(|e| fail(store, e))?;
        let packed = packed as u64;
        let (out_ptr, out_len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        if out_len > limits.output_bytes {
            return Err(FailureCause::MalformedOutput(format!(
                "it is {out_len} bytes, more than the {} an answer may have",
                limits.output_bytes
            )));
        }
        let mut answer = vec![0; out_len];
        memory.read(&*store, out_ptr, &mut answer).map_err(|_| {
            FailureCause::MalformedOutput(format!(
                "argosy_evaluate pointed at {out_len} bytes at {out_ptr}, outside its memory"
            ))
        })?;
        Ok(answer)
    }
}

/// The cause of a failed call, in words the policy's author can act on.
fn classify(store: &Store<Sandbox>, error: &wasmtime::Error, limits: Limits) -> FailureCause {
    if store.data().refused_growth {
        return FailureCause::MemoryCap {
            cap_bytes: limits.memory_bytes,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FailureCause::Timeout {
            budget_ms: u64::try_from(limits.budget.as_millis()).unwrap_or(u64::MAX),
        },
        Some(Trap::StackOverflow) => FailureCause::StackOverflow,
        Some(trap) => FailureCause::Trap(trap.to_string()),
        None => FailureCause::Trap(first_line(error)),
    }
}

fn first_line(error: &wasmtime::Error) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => {
            let list = |types: &mut dyn Iterator<Item = ValType>| {
                types.map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            };
            format!(
                "a function ({}) -> ({})",
                list(&mut f.params()),
                list(&mut f.results())
            )
        }
        ExternType::Memory(_) => "a memory".to_owned(),
        ExternType::Table(_) => "a table".to_owned(),
        ExternType::Global(_) => "a global".to_owned(),
        _ => "something else".to_owned(),
    }
}

/// Refuses a module whose memories start above the cap, before compiling
/// it (the pooling allocator would refuse it with a vaguer message).
fn check_memory_size(wasm: &[u8], memory_cap: u64) -> Result<(), ModuleError> {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| ModuleError::Invalid(e.message().to_owned()))?;
        if let wasmparser::Payload::MemorySection(memories) = payload {
            for memory in memories {
                let memory = memory.map_err(|e| ModuleError::Invalid(e.message().to_owned()))?;
                let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                let min_bytes = memory.initial.saturating_mul(page);
                if min_bytes > memory_cap {
                    return Err(ModuleError::MemoryTooLarge {
                        min_bytes,
                        cap_bytes: memory_cap,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Checks the ABI's exports.
fn check_interface(module: &Module) -> Result<(), ModuleError> {
    let find = |name: &'static str, expected: &'static str| {
        module
            .get_export(name)
            .ok_or(ModuleError::MissingExport { name, expected })
    };
    let memory = find(EXPORT_MEMORY, "a memory")?;
    match &memory {
        ExternType::Memory(m) if !m.is_64() && !m.is_shared() => {}
        other => {
            return Err(ModuleError::WrongExport {
                name: EXPORT_MEMORY,
                expected: "a 32-bit, unshared memory",
                found: describe(other),
            });
        }
    }
    let functions: [(&'static str, &'static str, &[ValType], &[ValType]); 2] = [
        (
            EXPORT_ALLOC,
            "a function (i32) -> (i32)",
            &[ValType::I32],
            &[ValType::I32],
        ),
        (
            EXPORT_EVALUATE,
            "a function (i32, i32) -> (i64)",
            &[ValType::I32, ValType::I32],
            &[ValType::I64],
        ),
    ];
    for (name, expected, params, results) in functions {
        let ty = find(name, expected)?;
        let matches = match &ty {
            ExternType::Func(f) => {
                f.params()
                    .map(|t| t.to_string())
                    .eq(params.iter().map(|t| t.to_string()))
                    && f.results()
                        .map(|t| t.to_string())
                        .eq(results.iter().map(|t| t.to_string()))
            }
            _ => false,
        };
        if !matches {
            return Err(ModuleError::WrongExport {
                name,
                expected,
                found: describe(&ty),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Hostile modules, written in WAT: each must fail closed with a cause
    //! naming what it did, or be refused at upload.
    use super::*;

    /// A module with the ABI whose `argosy_evaluate` body is `body` (it
    /// must leave an i64 on the stack or never return), with `extra`
    /// fields in the module.
    fn module(body: &str, extra: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module
                 (memory (export "memory") 1)
                 (global $next (mut i32) (i32.const 4096))
                 (data (i32.const 16) "{{\"allow\":true}}")
                 (data (i32.const 64) "{{\"allow\"")
                 (func (export "argosy_alloc") (param $len i32) (result i32)
                   (local $p i32)
                   (local.set $p (global.get $next))
                   (global.set $next (i32.add (global.get $next) (local.get $len)))
                   (local.get $p))
                 {extra}
                 (func (export "argosy_evaluate") (param $ptr i32) (param $len i32) (result i64)
                   {body}))"#
        ))
        .unwrap()
    }

    /// Answer the `len` bytes at `ptr`.
    fn answer_at(ptr: u32, len: u32) -> String {
        format!("(i64.or (i64.shl (i64.const {ptr}) (i64.const 32)) (i64.const {len}))")
    }

    fn host() -> PolicyHost {
        PolicyHost::new(Limits {
            concurrent_instances: 8,
            ..Limits::default()
        })
        .unwrap()
    }

    fn call(host: &PolicyHost, wasm: &[u8]) -> Result<String, FailureCause> {
        let inspected = host
            .inspect(wasm)
            .expect("the module passes the upload checks");
        host.call(&inspected.compiled, br#"{"abi":1,"input":{}}"#)
            .result
            .map(|bytes| String::from_utf8(bytes).unwrap())
    }

    #[test]
    fn the_deadline_goes_by_cpu_time_within_a_wall_clock_cap() {
        let ms = Duration::from_millis;
        let budget = ms(10);
        // Waited for a core: it gets the rest of its budget.
        assert_eq!(on_deadline(Some(ms(3)), ms(10), budget), Some(7));
        assert_eq!(
            on_deadline(Some(Duration::from_micros(9_900)), ms(10), budget),
            Some(1)
        );
        // Used it: trap.
        assert_eq!(on_deadline(Some(ms(10)), ms(10), budget), None);
        // Too long by the wall clock, however little CPU: trap.
        assert_eq!(on_deadline(Some(ms(1)), ms(200), budget), None);
        // No CPU clock: the wall clock is the budget.
        assert_eq!(on_deadline(None, ms(10), budget), None);
        assert!(
            thread_cpu_ns().is_some(),
            "this kernel reports thread CPU time"
        );
    }

    #[test]
    fn a_well_behaved_module_answers() {
        let host = host();
        let wasm = module(&answer_at(16, 14), "");
        assert_eq!(call(&host, &wasm).unwrap(), r#"{"allow":true}"#);
        // Compiled once, by hash.
        let sha = sha256_hex(&wasm);
        assert!(host.cached(&sha).is_some());
        assert_eq!(host.inspect(&wasm).unwrap().sha256, sha);
    }

    #[test]
    fn the_input_arrives_where_argosy_alloc_said() {
        // Echo the input back: the host wrote it at `ptr`.
        let host = host();
        let wasm = module(
            "(i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))",
            "",
        );
        let inspected = host.inspect(&wasm).unwrap();
        let answer = host
            .call(&inspected.compiled, b"hello policy")
            .result
            .unwrap();
        assert_eq!(answer, b"hello policy");
    }

    #[test]
    fn an_infinite_loop_times_out() {
        let host = host();
        let started = Instant::now();
        let wasm = module("(loop $forever (br $forever)) (unreachable)", "");
        assert_eq!(
            call(&host, &wasm).unwrap_err(),
            FailureCause::Timeout { budget_ms: 10 }
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn unbounded_memory_growth_hits_the_cap() {
        let host = host();
        let wasm = module(
            "(loop $more (drop (memory.grow (i32.const 16))) (br $more)) (unreachable)",
            "",
        );
        let err = call(&host, &wasm).unwrap_err();
        assert_eq!(
            err,
            FailureCause::MemoryCap {
                cap_bytes: 16 << 20
            }
        );
        assert_eq!(
            err.to_string(),
            "it tried to use more than its 16 MiB memory cap"
        );
    }

    #[test]
    fn growing_memory_is_allowed_and_reported() {
        let host = host();
        let calm = host.inspect(&module(&answer_at(16, 14), "")).unwrap();
        let called = host.call(&calm.compiled, br#"{"abi":1,"input":{}}"#);
        assert_eq!(called.result.unwrap(), br#"{"allow":true}"#);
        assert!(!called.grew_memory, "instantiation is not growth");
        let growing = host
            .inspect(&module(
                &format!("(drop (memory.grow (i32.const 1))) {}", answer_at(16, 14)),
                "",
            ))
            .unwrap();
        for _ in 0..3 {
            // Every call starts from the module's own initial memory again.
            let called = host.call(&growing.compiled, br#"{"abi":1,"input":{}}"#);
            assert_eq!(called.result.unwrap(), br#"{"allow":true}"#);
            assert!(called.grew_memory);
        }
    }

    #[test]
    fn traps_and_stack_overflows_are_named() {
        let host = host();
        assert_eq!(
            call(&host, &module("(unreachable)", "")).unwrap_err(),
            FailureCause::Trap("wasm trap: wasm `unreachable` instruction executed".to_owned())
        );
        let recursive = module(
            "(call $deeper (i64.const 0))",
            "(func $deeper (param i64) (result i64) (call $deeper (i64.add (local.get 0) (i64.const 1))))",
        );
        assert_eq!(
            call(&host, &recursive).unwrap_err(),
            FailureCause::StackOverflow
        );
    }

    #[test]
    fn answers_outside_memory_or_too_large_are_malformed() {
        let host = host();
        let outside = call(&host, &module(&answer_at(65_530, 100), "")).unwrap_err();
        assert!(
            matches!(outside, FailureCause::MalformedOutput(ref m) if m.contains("outside its memory")),
            "{outside}"
        );
        let huge = call(&host, &module(&answer_at(0, 2 << 20), "")).unwrap_err();
        assert!(
            matches!(huge, FailureCause::MalformedOutput(ref m) if m.contains("more than")),
            "{huge}"
        );
        // Malformed JSON is caught by the decision layer.
        let truncated = call(&host, &module(&answer_at(64, 8), "")).unwrap();
        assert!(
            crate::policy::decision::parse_answer::<crate::policy::decision::AdmitAnswer>(
                truncated.as_bytes()
            )
            .is_err()
        );
    }

    #[test]
    fn every_call_gets_a_fresh_instance() {
        // Traps if a global set by an earlier call survived.
        let host = host();
        let wasm = module(
            &format!(
                "(if (global.get $seen) (then (unreachable))) (global.set $seen (i32.const 1)) {}",
                answer_at(16, 14)
            ),
            "(global $seen (mut i32) (i32.const 0))",
        );
        for _ in 0..3 {
            assert!(call(&host, &wasm).is_ok());
        }
    }

    #[test]
    fn modules_with_imports_are_refused_at_upload() {
        let host = host();
        for (import, name) in [
            (
                r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
                "wasi_snapshot_preview1::fd_write",
            ),
            (
                r#"(import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))"#,
                "wasi_snapshot_preview1::path_open",
            ),
            (
                r#"(import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))"#,
                "wasi_snapshot_preview1::clock_time_get",
            ),
            (r#"(import "env" "now" (func (result i64)))"#, "env::now"),
        ] {
            let wasm = wat::parse_str(format!(
                r#"(module {import}
                     (memory (export "memory") 1)
                     (func (export "argosy_alloc") (param i32) (result i32) (i32.const 0))
                     (func (export "argosy_evaluate") (param i32 i32) (result i64) (i64.const 0)))"#
            ))
            .unwrap();
            let err = host.inspect(&wasm).err().expect("refused");
            assert_eq!(err, ModuleError::Imports(name.to_owned()));
            assert!(
                err.to_string().contains("policies get no host functions"),
                "{err}"
            );
        }
    }

    #[test]
    fn modules_with_the_wrong_interface_are_refused_at_upload() {
        let host = host();
        let cases = [
            (
                r#"(module (memory (export "memory") 1) (func (export "argosy_alloc") (param i32) (result i32) (i32.const 0)))"#,
                ModuleError::MissingExport {
                    name: EXPORT_EVALUATE,
                    expected: "a function (i32, i32) -> (i64)",
                },
            ),
            (
                r#"(module (func (export "argosy_alloc") (param i32) (result i32) (i32.const 0)))"#,
                ModuleError::MissingExport {
                    name: EXPORT_MEMORY,
                    expected: "a memory",
                },
            ),
            (
                r#"(module (memory (export "memory") 1)
                     (func (export "argosy_alloc") (param i32) (result i32) (i32.const 0))
                     (func (export "argosy_evaluate") (param i32 i32) (result i32) (i32.const 0)))"#,
                ModuleError::WrongExport {
                    name: EXPORT_EVALUATE,
                    expected: "a function (i32, i32) -> (i64)",
                    found: "a function (i32, i32) -> (i32)".to_owned(),
                },
            ),
            (
                r#"(module (memory (export "memory") 512)
                     (func (export "argosy_alloc") (param i32) (result i32) (i32.const 0))
                     (func (export "argosy_evaluate") (param i32 i32) (result i64) (i64.const 0)))"#,
                ModuleError::MemoryTooLarge {
                    min_bytes: 512 << 16,
                    cap_bytes: 16 << 20,
                },
            ),
        ];
        for (text, expected) in cases {
            let err = host
                .inspect(&wat::parse_str(text).unwrap())
                .err()
                .expect("refused");
            assert_eq!(err, expected);
        }
        assert!(matches!(
            host.inspect(b"not wasm"),
            Err(ModuleError::Invalid(_))
        ));
        let big = vec![0; Limits::default().module_bytes + 1];
        assert!(matches!(
            host.inspect(&big),
            Err(ModuleError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_wrong_interface_found_at_call_time_fails_closed() {
        // Stored before the checks existed, say: the call names the problem.
        let host = host();
        let wasm = wat::parse_str(
            r#"(module (memory (export "memory") 1) (func (export "argosy_alloc") (param i32) (result i32) (i32.const 0)))"#,
        )
        .unwrap();
        let compiled = host.load(&sha256_hex(&wasm), &wasm).unwrap();
        let err = host.call(&compiled, b"{}").result.unwrap_err();
        assert!(matches!(err, FailureCause::WrongInterface(_)), "{err}");
        assert!(matches!(
            host.load("0000", &wasm),
            Err(FailureCause::Runtime(m)) if m.contains("does not match its sha256")
        ));
    }

    #[test]
    fn a_looping_module_does_not_hold_up_other_calls() {
        let host = Arc::new(host());
        let looping = host
            .inspect(&module("(loop $forever (br $forever)) (unreachable)", ""))
            .unwrap();
        let good = host.inspect(&module(&answer_at(16, 14), "")).unwrap();
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let (host, looping) = (host.clone(), looping.compiled.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        assert!(host.call(&looping, b"{}").result.is_err());
                    }
                })
            })
            .collect();
        for _ in 0..50 {
            let called = host.call(&good.compiled, b"{}");
            assert!(called.result.is_ok());
        }
        for spinner in spinners {
            spinner.join().unwrap();
        }
    }
}
