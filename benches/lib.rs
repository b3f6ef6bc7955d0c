//! Shared set-up for edge's benchmarks: generated input and loaded rule sets.

use edge::config::{DecodeConfig, GeneratorConfig, Limits};
use edge::decode::Decoder;
use edge::dims::Dims;
use edge::gen::Generator;
use edge::model::Format;
use edge::model::{Interner, Txn};
use edge::runtime::{Rule, Runtime};
use std::sync::{Arc, RwLock};

/// `n` generated records (1% dirty), as bytes.
pub fn records(n: usize) -> Vec<Vec<u8>> {
    let mut g = Generator::new(&GeneratorConfig::default());
    (0..n).map(|_| g.next_record().bytes).collect()
}

/// `n` decoded events and the interner that holds their strings.
pub fn events(n: usize) -> (Vec<Txn>, Interner) {
    let d = Decoder::new(Format::Json, &DecodeConfig::default()).expect("decoder");
    let mut strings = Interner::default();
    let txns = records(n)
        .iter()
        .filter_map(|r| d.decode(r, &mut strings).ok())
        .collect();
    (txns, strings)
}

/// A runtime with the generator's dimensions.
pub fn runtime() -> Runtime {
    let dims = Generator::new(&GeneratorConfig::default()).dims();
    Runtime::new(Arc::new(RwLock::new(dims))).expect("runtime")
}

/// A runtime without dimensions.
pub fn bare_runtime() -> Runtime {
    Runtime::new(Arc::new(RwLock::new(Dims::default()))).expect("runtime")
}

/// Loads a rule set with default limits.
pub fn load(runtime: &Runtime, path: &str) -> Rule {
    runtime
        .load(
            std::path::Path::new(path),
            &Limits::default(),
            &Default::default(),
        )
        .expect("rule set loads")
}
