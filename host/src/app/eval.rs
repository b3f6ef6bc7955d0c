//! `edge eval`: how well a run's alerts find the fraud the generator
//! planted (`edge gen --labels`). Per alert kind: how many, how many per
//! 1,000 events, and the precision (the share raised on a planted
//! transaction). Per planted pattern: the incidents planted, those found
//! (an alert on any of the incident's transactions), the recall, and the
//! kinds that found them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// An alert kind's figures.
#[derive(Debug, Default)]
pub struct KindScore {
    /// Alerts of the kind.
    pub alerts: u64,
    /// Those raised on a planted transaction.
    pub on_planted: u64,
}

/// A planted pattern's figures.
#[derive(Debug, Default)]
pub struct PatternScore {
    /// Its planted transactions.
    pub transactions: u64,
    /// Its incidents (a burst is one incident of several transactions).
    pub incidents: BTreeSet<u64>,
    /// The incidents with an alert on one of their transactions.
    pub found: BTreeSet<u64>,
    /// Per alert kind, the incidents it found.
    pub by_kind: BTreeMap<String, BTreeSet<u64>>,
}

impl PatternScore {
    /// Incidents found over incidents planted.
    pub fn recall(&self) -> f64 {
        ratio(self.found.len() as u64, self.incidents.len() as u64)
    }
}

/// The scores of a run's alerts against the planted fraud.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Events the run processed.
    pub events: u64,
    /// Per alert kind.
    pub kinds: BTreeMap<String, KindScore>,
    /// Per planted pattern.
    pub patterns: BTreeMap<String, PatternScore>,
}

impl Evaluation {
    /// Alerts in all.
    pub fn alerts(&self) -> u64 {
        self.kinds.values().map(|k| k.alerts).sum()
    }

    /// Alerts per 1,000 events.
    pub fn per_thousand(&self, alerts: u64) -> f64 {
        ratio(alerts * 1000, self.events)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[derive(serde::Deserialize)]
struct Label {
    transaction_id: String,
    pattern: String,
    incident: u64,
}

#[derive(serde::Deserialize)]
struct Alert {
    kind: String,
    transaction_id: Option<String>,
}

/// Scores the alerts in `alerts` (an `alerts.jsonl` of a run over
/// `events` events) against the labels in `labels`.
pub fn evaluate(alerts: &Path, labels: &Path, events: u64) -> anyhow::Result<Evaluation> {
    let mut eval = Evaluation {
        events,
        ..Default::default()
    };
    let mut planted: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let labels: Vec<Label> = read(labels, "labels file (`edge gen --labels`)")?;
    for label in labels {
        let score = eval.patterns.entry(label.pattern.clone()).or_default();
        score.transactions += 1;
        score.incidents.insert(label.incident);
        planted.insert(label.transaction_id, (label.pattern, label.incident));
    }
    let alerts: Vec<Alert> = read(alerts, "alerts file (`edge run`)")?;
    for alert in alerts {
        let kind = eval.kinds.entry(alert.kind.clone()).or_default();
        kind.alerts += 1;
        let hit = alert.transaction_id.as_ref().and_then(|id| planted.get(id));
        if let Some((pattern, incident)) = hit {
            kind.on_planted += 1;
            if let Some(score) = eval.patterns.get_mut(pattern) {
                score.found.insert(*incident);
                score
                    .by_kind
                    .entry(alert.kind)
                    .or_default()
                    .insert(*incident);
            }
        }
    }
    Ok(eval)
}

/// The lines of the JSON lines file `path`, a `what`.
fn read<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<Vec<T>> {
    crate::dims::read_lines(path, what).map_err(anyhow::Error::msg)
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alerts = self.alerts();
        let on_planted: u64 = self.kinds.values().map(|k| k.on_planted).sum();
        writeln!(
            f,
            "{alerts} alerts over {} events: {:.1} per 1,000; {on_planted} on planted fraud \
             (precision {:.3})\n",
            self.events,
            self.per_thousand(alerts),
            ratio(on_planted, alerts)
        )?;
        writeln!(
            f,
            "{:<24} {:>9} {:>10} {:>11} {:>10}",
            "alert kind", "alerts", "per 1,000", "on planted", "precision"
        )?;
        for (name, k) in &self.kinds {
            writeln!(
                f,
                "{name:<24} {:>9} {:>10.2} {:>11} {:>10.3}",
                k.alerts,
                self.per_thousand(k.alerts),
                k.on_planted,
                ratio(k.on_planted, k.alerts)
            )?;
        }
        writeln!(
            f,
            "\n{:<14} {:>12} {:>9} {:>6} {:>9}  found by",
            "pattern", "transactions", "incidents", "found", "recall"
        )?;
        for (name, p) in &self.patterns {
            let by: Vec<String> = (p.by_kind.iter())
                .map(|(kind, found)| format!("{kind} {}", found.len()))
                .collect();
            writeln!(
                f,
                "{name:<14} {:>12} {:>9} {:>6} {:>9.3}  {}",
                p.transactions,
                p.incidents.len(),
                p.found.len(),
                p.recall(),
                by.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_scored_per_kind_and_incidents_per_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels.jsonl");
        let alerts = dir.path().join("alerts.jsonl");
        std::fs::write(
            &labels,
            [
                r#"{"transaction_id":"b1","pattern":"burst","incident":1}"#,
                r#"{"transaction_id":"b2","pattern":"burst","incident":1}"#,
                r#"{"transaction_id":"b3","pattern":"burst","incident":2}"#,
                r#"{"transaction_id":"s1","pattern":"amount_spike","incident":3}"#,
            ]
            .join("\n"),
        )
        .unwrap();
        std::fs::write(
            &alerts,
            [
                r#"{"kind":"CARD_TESTING","transaction_id":"b2"}"#,
                r#"{"kind":"CARD_TESTING","transaction_id":"x"}"#,
                r#"{"kind":"HIGH_AMOUNT","transaction_id":"s1"}"#,
                r#"{"kind":"HIGH_AMOUNT","transaction_id":"b2"}"#,
            ]
            .join("\n"),
        )
        .unwrap();
        let e = evaluate(&alerts, &labels, 2000).unwrap();
        assert_eq!(e.alerts(), 4);
        assert_eq!(e.per_thousand(e.alerts()), 2.0);
        let card = &e.kinds["CARD_TESTING"];
        assert_eq!((card.alerts, card.on_planted), (2, 1));
        let burst = &e.patterns["burst"];
        assert_eq!((burst.transactions, burst.incidents.len()), (3, 2));
        assert_eq!(burst.recall(), 0.5, "incident 2 has no alert");
        assert_eq!(e.patterns["amount_spike"].recall(), 1.0);
        let text = e.to_string();
        assert!(text.contains("CARD_TESTING 1, HIGH_AMOUNT 1"), "{text}");
        std::fs::write(&alerts, "not json\n").unwrap();
        let error = format!("{:#}", evaluate(&alerts, &labels, 10).unwrap_err());
        assert!(
            error.contains("alerts file") && error.contains("line 1"),
            "{error}"
        );
    }
}
