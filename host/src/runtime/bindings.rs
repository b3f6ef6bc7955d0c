//! Generated bindings of the `edge:rules` world, in one place.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "rule-set",
    additional_derives: [PartialEq],
});

pub use self::edge::rules::types;
