//! What a rule set's store holds, and the host imports it may call.

use super::bindings::edge::rules::{host, types};
use super::SharedDims;
use crate::state::KeyedState;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

/// A wall clock that always reads the epoch: guests get no real time.
struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A monotonic clock that never moves.
struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The store's limits, counting the linear memory its instances hold (a
/// guest's memory only grows).
pub(crate) struct Counted {
    limits: StoreLimits,
    /// Bytes of linear memory held.
    pub(crate) memory_bytes: usize,
}

impl ResourceLimiter for Counted {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes += desired.saturating_sub(current);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The data of one rule set's store.
pub struct HostState {
    wasi: WasiCtx,
    stderr: MemoryOutputPipe,
    table: ResourceTable,
    pub(crate) limits: Counted,
    /// The rule set's name, for logs.
    pub rule: String,
    /// The keyed state lent to the call in progress (the pipeline owns it;
    /// empty between calls).
    pub state: KeyedState,
    /// Event time used to stamp state writes (the current watermark).
    pub now: i64,
    dims: SharedDims,
}

impl HostState {
    /// A store's data with a memory cap of `memory_bytes`.
    pub fn new(rule: String, dims: SharedDims, memory_bytes: usize) -> Self {
        let stderr = MemoryOutputPipe::new(8 * 1024);
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .wall_clock(FixedWallClock)
            .monotonic_clock(FixedMonotonicClock)
            .secure_random(wasmtime_wasi::random::Deterministic::new(vec![
                0x5e, 0xed, 0x01, 0x02,
            ]))
            .insecure_random(wasmtime_wasi::random::Deterministic::new(vec![
                0x5e, 0xed, 0x03, 0x04,
            ]))
            .insecure_random_seed(0x5eed)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        Self {
            wasi,
            stderr,
            table: ResourceTable::new(),
            limits: Counted {
                limits: StoreLimitsBuilder::new()
                    .memory_size(memory_bytes)
                    .trap_on_grow_failure(true)
                    .instances(16)
                    .memories(4)
                    .tables(16)
                    .build(),
                memory_bytes: 0,
            },
            rule,
            state: KeyedState::default(),
            now: i64::MIN,
            dims,
        }
    }
}

impl HostState {
    /// The last line the guest wrote to stderr (a panic message, usually).
    pub fn last_stderr_line(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("note: "))
            .map(|l| l.chars().take(500).collect())
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: types::Level, message: String) {
        let rule = &self.rule;
        let message: String = message.chars().take(4096).collect();
        match level {
            types::Level::Trace => tracing::trace!(rule = %rule, "{message}"),
            types::Level::Debug => tracing::debug!(rule = %rule, "{message}"),
            types::Level::Info => tracing::info!(rule = %rule, "{message}"),
            types::Level::Warn => tracing::warn!(rule = %rule, "{message}"),
            types::Level::Error => tracing::error!(rule = %rule, "{message}"),
        }
    }

    fn state_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.state.get(&key).map(<[u8]>::to_vec)
    }

    fn state_set(&mut self, key: String, value: Vec<u8>) {
        self.state.set(&key, value, self.now);
    }

    fn state_delete(&mut self, key: String) {
        self.state.delete(&key);
    }

    fn get_customer(&mut self, id: String) -> Option<types::Customer> {
        let dims = self.dims.read().ok()?;
        dims.customer(&id).map(|c| types::Customer {
            id: c.id.clone(),
            tier: c.tier.clone(),
            segment: c.segment.clone(),
            signup_time: c.signup_time,
            country: c.country.clone(),
            city: c.city.clone(),
        })
    }

    fn get_merchant(&mut self, id: String) -> Option<types::Merchant> {
        let dims = self.dims.read().ok()?;
        dims.merchant(&id).map(|m| types::Merchant {
            id: m.id.clone(),
            name: m.name.clone(),
            category: m.category.clone(),
            country: m.country.clone(),
            city: m.city.clone(),
        })
    }

    fn dims_version(&mut self) -> u64 {
        self.dims.read().map_or(0, |d| d.version())
    }
}
