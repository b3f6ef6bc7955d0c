//! Dimension tables (customers, merchants) served to rule sets through the
//! `get-customer` and `get-merchant` host imports. A miss returns none.

use rustc_hash::FxHashMap;
use serde::Deserialize;
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
    customers: FxHashMap<String, CustomerDim>,
    merchants: FxHashMap<String, MerchantDim>,
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

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot open dimension file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))?,
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
        for c in read_lines::<CustomerLine>(path)? {
            let signup_time = match &c.signup_date {
                Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
                Some(serde_json::Value::String(s)) => crate::decode::parse_time(s)
                    .or_else(|| crate::decode::parse_time(&format!("{s}T00:00:00Z")))
                    .unwrap_or(0),
                _ => 0,
            };
            self.put_customer(CustomerDim {
                id: c.customer_id,
                tier: c.tier.unwrap_or_else(|| "UNKNOWN".into()),
                segment: c.segment.unwrap_or_default(),
                signup_time,
                country: c.country.unwrap_or_default(),
                city: c.city.unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Loads merchants from JSON lines.
    pub fn load_merchants(&mut self, path: &Path) -> Result<(), String> {
        for m in read_lines::<MerchantLine>(path)? {
            self.put_merchant(MerchantDim {
                id: m.merchant_id,
                name: m.name.unwrap_or_default(),
                category: m.category.unwrap_or_else(|| "unknown".into()),
                country: m.country.unwrap_or_default(),
                city: m.city.unwrap_or_default(),
            });
        }
        Ok(())
    }
}
