//! Dimension tables (customers, merchants) served to rule sets through the
//! `get-customer` and `get-merchant` host imports. A miss returns none.

use serde::Deserialize;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

/// A customer record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerDim {
    /// Customer id.
    pub id: String,
    /// BASIC, PREMIUM, VIP or ENTERPRISE.
    pub tier: String,
    /// Marketing segment.
    pub segment: String,
    /// Sign-up time, ms since the epoch.
    pub signup_time: i64,
    /// Home country.
    pub country: String,
    /// Home city.
    pub city: String,
}

/// A merchant record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerchantDim {
    /// Merchant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Country.
    pub country: String,
    /// City.
    pub city: String,
}

/// The dimension tables.
#[derive(Clone, Debug, Default)]
pub struct Dims {
    /// By id, seeded per process (ids are input).
    customers: HashMap<String, CustomerDim, foldhash::fast::RandomState>,
    merchants: HashMap<String, MerchantDim, foldhash::fast::RandomState>,
    version: u64,
}

#[derive(Deserialize)]
struct CustomerLine {
    customer_id: String,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    segment: Option<String>,
    #[serde(default)]
    signup_date: Option<serde_json::Value>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    city: Option<String>,
}

#[derive(Deserialize)]
struct MerchantLine {
    merchant_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    city: Option<String>,
}

/// Every line of the JSON lines file `path` (a `what`, named in errors)
/// read as a `T`; blank lines are skipped.
pub fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path, what: &str) -> Result<Vec<T>, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot open {what} {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{what} {}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .map_err(|e| format!("{what} {} line {}: {e}", path.display(), n + 1))?,
        );
    }
    Ok(out)
}

impl Dims {
    /// Adds or replaces a customer.
    pub fn put_customer(&mut self, c: CustomerDim) {
        self.customers.insert(c.id.clone(), c);
        self.version += 1;
    }

    /// Adds or replaces a merchant.
    pub fn put_merchant(&mut self, m: MerchantDim) {
        self.merchants.insert(m.id.clone(), m);
        self.version += 1;
    }

    /// Removes a customer; returns whether it was there.
    pub fn remove_customer(&mut self, id: &str) -> bool {
        let removed = self.customers.remove(id).is_some();
        self.version += u64::from(removed);
        removed
    }

    /// Changes whenever a customer or merchant is added or replaced.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Looks a customer up.
    pub fn customer(&self, id: &str) -> Option<&CustomerDim> {
        self.customers.get(id)
    }

    /// Looks a merchant up.
    pub fn merchant(&self, id: &str) -> Option<&MerchantDim> {
        self.merchants.get(id)
    }

    /// Loads customers from JSON lines.
    pub fn load_customers(&mut self, path: &Path) -> Result<(), String> {
        for c in read_lines::<CustomerLine>(path, "dimension file")? {
            self.put_customer(c.into());
        }
        Ok(())
    }

    /// Loads merchants from JSON lines.
    pub fn load_merchants(&mut self, path: &Path) -> Result<(), String> {
        for m in read_lines::<MerchantLine>(path, "dimension file")? {
            self.put_merchant(m.into());
        }
        Ok(())
    }

    /// Applies one record of a dimension topic: a plain JSON row or a
    /// Debezium change event (a delete removes the row). Returns whether it
    /// changed anything.
    pub fn apply(&mut self, kind: DimKind, bytes: &[u8]) -> Result<bool, String> {
        if bytes.is_empty() {
            return Ok(false);
        }
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let is_change = value.get("payload").is_some() || value.get("op").is_some();
        let row = if is_change {
            if let Some(before) = deleted_row(&value) {
                let id = before
                    .get(kind.id_field())
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                let removed = match kind {
                    DimKind::Customers => self.customers.remove(id).is_some(),
                    DimKind::Merchants => self.merchants.remove(id).is_some(),
                };
                self.version += u64::from(removed);
                return Ok(removed);
            }
            match crate::decode::debezium::unwrap_tables(text, false).map_err(|r| r.detail)? {
                crate::decode::debezium::Change::Row(row, _) => row,
                crate::decode::debezium::Change::Skip(_) => return Ok(false),
            }
        } else {
            value
        };
        match kind {
            DimKind::Customers => {
                let c: CustomerLine = serde_json::from_value(row).map_err(|e| e.to_string())?;
                self.put_customer(c.into());
            }
            DimKind::Merchants => {
                let m: MerchantLine = serde_json::from_value(row).map_err(|e| e.to_string())?;
                self.put_merchant(m.into());
            }
        }
        Ok(true)
    }
}

/// Which dimension a topic feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimKind {
    /// Customers (`customer_id`, ...).
    Customers,
    /// Merchants (`merchant_id`, ...).
    Merchants,
}

impl DimKind {
    fn id_field(self) -> &'static str {
        match self {
            DimKind::Customers => "customer_id",
            DimKind::Merchants => "merchant_id",
        }
    }
}

/// The `before` row of a Debezium delete, with or without the schema wrapper.
fn deleted_row(value: &serde_json::Value) -> Option<&serde_json::Value> {
    let body = value
        .get("payload")
        .filter(|p| p.is_object())
        .unwrap_or(value);
    (body.get("op")?.as_str()? == "d").then(|| body.get("before"))?
}

impl From<CustomerLine> for CustomerDim {
    fn from(c: CustomerLine) -> Self {
        let signup_time = match &c.signup_date {
            Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(serde_json::Value::String(s)) => crate::model::parse_time(s)
                .or_else(|| crate::model::parse_time(&format!("{s}T00:00:00Z")))
                .unwrap_or(0),
            _ => 0,
        };
        CustomerDim {
            id: c.customer_id,
            tier: c.tier.unwrap_or_else(|| "UNKNOWN".into()),
            segment: c.segment.unwrap_or_default(),
            signup_time,
            country: c.country.unwrap_or_default(),
            city: c.city.unwrap_or_default(),
        }
    }
}

impl From<MerchantLine> for MerchantDim {
    fn from(m: MerchantLine) -> Self {
        MerchantDim {
            id: m.merchant_id,
            name: m.name.unwrap_or_default(),
            category: m.category.unwrap_or_else(|| "unknown".into()),
            country: m.country.unwrap_or_default(),
            city: m.city.unwrap_or_default(),
        }
    }
}
