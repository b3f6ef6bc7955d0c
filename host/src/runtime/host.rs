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

/// Elements all of a store's tables may hold together: a rule set's
/// function table holds a few thousand; one `table.grow` past this traps
/// instead of making the host commit its memory.
pub const TABLE_ELEMENTS: usize = 1 << 18;

/// Log lines a rule set instance may write per second; the rest are
/// counted and reported as dropped.
pub const LOG_LINES_PER_SECOND: u32 = 100;

/// The store's limits, counting the linear memory and table elements its
/// instances hold (both only grow). The memory cap holds for all of a
/// store's memories together, and so does the table cap.
pub(crate) struct Counted {
    limits: StoreLimits,
    /// The memory cap, bytes.
    memory_cap: usize,
    /// Bytes of linear memory held.
    pub(crate) memory_bytes: usize,
    /// Table elements held.
    table_elements: usize,
}

impl Counted {
    fn new(memory_cap: usize) -> Self {
        Self {
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_cap)
                .table_elements(TABLE_ELEMENTS)
                .trap_on_grow_failure(true)
                .instances(16)
                .memories(4)
                .tables(16)
                .build(),
            memory_cap,
            memory_bytes: 0,
            table_elements: 0,
        }
    }
}

impl ResourceLimiter for Counted {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if self.memory_bytes.saturating_add(growth) > self.memory_cap {
            wasmtime::bail!(
                "forcing trap when growing memory by {growth} bytes: the store's memories \
                 would hold {} bytes, past the memory limit of {}",
                self.memory_bytes.saturating_add(growth),
                self.memory_cap
            );
        }
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes += growth;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if self.table_elements.saturating_add(growth) > TABLE_ELEMENTS {
            wasmtime::bail!(
                "forcing trap when growing table by {growth} elements: the store's tables \
                 would hold {} elements, past the limit of {TABLE_ELEMENTS}",
                self.table_elements.saturating_add(growth)
            );
        }
        let allowed = self.limits.table_growing(current, desired, maximum)?;
        if allowed {
            self.table_elements += growth;
        }
        Ok(allowed)
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

/// Log lines of the current second, and those dropped.
struct LogBudget {
    second: Option<std::time::Instant>,
    lines: u32,
    dropped: u64,
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
    /// Bytes of keyed state this instance may hold (its worker's share of
    /// `state-mib`).
    pub state_quota: usize,
    /// Set when a `state-set` was refused for the quota: the call fails.
    pub over_quota: Option<String>,
    log: LogBudget,
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
            limits: Counted::new(memory_bytes),
            rule,
            state: KeyedState::default(),
            now: i64::MIN,
            state_quota: usize::MAX,
            over_quota: None,
            log: LogBudget {
                second: None,
                lines: 0,
                dropped: 0,
            },
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

/// At most `max` bytes of `text`, cut at a character boundary, with `…`
/// where it was cut.
pub(crate) fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len()).into()
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
        let now = std::time::Instant::now();
        let budget = &mut self.log;
        if budget
            .second
            .is_none_or(|s| now.duration_since(s) >= std::time::Duration::from_secs(1))
        {
            if budget.dropped > 0 {
                tracing::warn!(
                    rule = %rule,
                    "{} log lines dropped (a rule set may log {LOG_LINES_PER_SECOND} lines a second)",
                    budget.dropped
                );
            }
            *budget = LogBudget {
                second: Some(now),
                lines: 0,
                dropped: 0,
            };
        }
        if budget.lines >= LOG_LINES_PER_SECOND {
            if budget.dropped == 0 {
                tracing::warn!(
                    rule = %rule,
                    "more than {LOG_LINES_PER_SECOND} log lines in a second: the rest of this \
                     second's lines are dropped, and counted"
                );
            }
            budget.dropped += 1;
            return;
        }
        budget.lines += 1;
        let message = truncate(&message, 4096);
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
        let held = self.state.get(&key).map_or(0, |v| key.len() + v.len());
        let after = (self.state.bytes() - held).saturating_add(key.len() + value.len());
        if after > self.state_quota {
            self.over_quota.get_or_insert_with(|| {
                format!(
                    "state-set of {} bytes would hold {after} bytes of keyed state, past its \
                     quota of {} bytes (limits state-mib, shared by the workers)",
                    key.len() + value.len(),
                    self.state_quota
                )
            });
            return;
        }
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
