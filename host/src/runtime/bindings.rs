//! Generated bindings of the `edge:rules` world, in one place.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "rule-set",
    additional_derives: [PartialEq],
});

pub use self::edge::rules::types;

/// The version of the `edge:rules` package this host implements.
pub const WIT_VERSION: &str = "0.3.0";

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_is_the_wit_packages() {
        let wit = include_str!("../../../wit/edge-rules.wit");
        let package = format!("package edge:rules@{};", super::WIT_VERSION);
        assert!(wit.lines().any(|l| l == package), "{package}");
    }
}
