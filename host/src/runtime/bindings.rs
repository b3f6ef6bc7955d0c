//! Generated bindings of the `edge:rules` world, in one place.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "rule-set",
    additional_derives: [PartialEq],
});

pub use self::edge::rules::types;

use crate::model::{Kind, RiskLevel, Status};
use rust_decimal::{Decimal, RoundingStrategy};
use types::{Decimal as WitDecimal, TxnKind, TxnStatus};

/// A Decimal as a WIT decimal (exact: amounts fit in s64 units).
pub fn wit_decimal(d: Decimal) -> WitDecimal {
    let mut d = d;
    if i64::try_from(d.mantissa()).is_err() {
        d = d.normalize();
    }
    loop {
        if let Ok(units) = i64::try_from(d.mantissa()) {
            return WitDecimal {
                units,
                scale: d.scale() as u8,
            };
        }
        if d.scale() == 0 {
            return WitDecimal {
                units: if d.is_sign_negative() {
                    i64::MIN
                } else {
                    i64::MAX
                },
                scale: 0,
            };
        }
        d = d.round_dp_with_strategy(d.scale() - 1, RoundingStrategy::MidpointAwayFromZero);
    }
}

/// The kind as in WIT.
pub fn wit_kind(k: Kind) -> TxnKind {
    match k {
        Kind::Purchase => TxnKind::Purchase,
        Kind::Transfer => TxnKind::Transfer,
        Kind::WireTransfer => TxnKind::WireTransfer,
        Kind::Withdrawal => TxnKind::Withdrawal,
        Kind::Deposit => TxnKind::Deposit,
        Kind::Payment => TxnKind::Payment,
        Kind::Refund => TxnKind::Refund,
        Kind::Other => TxnKind::Other,
    }
}

/// The risk level as in WIT.
pub fn wit_risk_level(l: RiskLevel) -> types::RiskLevel {
    use types::RiskLevel as Wit;
    match l {
        RiskLevel::Low => Wit::Low,
        RiskLevel::Medium => Wit::Medium,
        RiskLevel::High => Wit::High,
        RiskLevel::Critical => Wit::Critical,
    }
}

/// The status as in WIT.
pub fn wit_status(s: Status) -> TxnStatus {
    match s {
        Status::Pending => TxnStatus::Pending,
        Status::Completed => TxnStatus::Completed,
        Status::Failed => TxnStatus::Failed,
        Status::Reversed => TxnStatus::Reversed,
    }
}

/// The version of the `edge:rules` package this host implements.
pub const WIT_VERSION: &str = "0.4.0";

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_is_the_wit_packages() {
        let wit = include_str!("../../../wit/edge-rules.wit");
        let package = format!("package edge:rules@{};", super::WIT_VERSION);
        assert!(wit.lines().any(|l| l == package), "{package}");
    }
}
