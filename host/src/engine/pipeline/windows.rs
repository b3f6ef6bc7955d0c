//! Windows: a batch's events go into each rule set's open windows (a late
//! one to the `late` stream, one past `engine.max-open-windows` to the dead
//! letters), and the windows the watermark closed fire into the rule set's
//! `on-windows`, a group at a time.

use super::rules::Input;
use super::worker::{Work, Worker};
use crate::engine::key::key_label;
use crate::engine::window::Admit;
use crate::model::{ids, iso_time, preview, Txn};
use crate::sink::{DeadLetter, LateRecord, Record};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Fired windows per `on-windows` call: bounds the guest memory one call needs.
const WINDOWS_PER_CALL: usize = 256;

impl Worker {
    /// Adds a batch's events to the slot's windows (each spec the events
    /// of the keys this worker owns); lateness is judged against the
    /// watermark before the batch.
    pub(super) fn admit(&mut self, slot: usize, work: &Work) {
        let watermark = work.before;
        for w in 0..self.slots[slot].windows.len() {
            let (_, txns) = work.list(self.slots[slot].windows[w].key_by());
            for t in txns {
                match self.slots[slot].windows[w].add(t, watermark, &self.strings) {
                    Admit::Added => {}
                    Admit::Late => {
                        let late = LateRecord {
                            rule: self.slots[slot].rule.name().to_string(),
                            window: self.slots[slot].windows[w].name.clone(),
                            watermark,
                            event: t.to_json(&self.strings, &self.attributes),
                        };
                        self.out.push(Record::Late(late));
                    }
                    Admit::Full { key, start } => self.window_full(slot, w, t, key, start),
                }
            }
        }
    }

    /// An event a window spec refused at `engine.max-open-windows`: a dead
    /// letter with the event and the window it did not get into.
    fn window_full(&mut self, slot: usize, w: usize, t: &Txn, key: u32, start: i64) {
        let (rule, op) = (&self.slots[slot].rule, &self.slots[slot].windows[w]);
        let key = key_label(op.key_by(), key);
        let key = key.text(&self.strings);
        let detail = format!(
            "rule set {} window spec {} has {} windows open (engine.max-open-windows); \
             the event is not in its window of key {:?} from {}",
            rule.name(),
            op.name,
            op.len(),
            preview(key),
            iso_time(start)
        );
        if self
            .warned_full
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
        {
            self.warned_full = Some(Instant::now());
            tracing::warn!("{detail}; such events go to the dead letters (raise the limit or shorten the windows)");
        }
        let id = ids::window_limit(rule.name(), &op.name, &t.id);
        let window = serde_json::json!({
            "spec": op.name,
            "key": key,
            "start": iso_time(start),
        });
        let mut letter = DeadLetter::new(id, "window_limit", detail, self.source_name.clone());
        letter.rule = Some(rule.name().to_string());
        letter.events = Some(serde_json::Value::Array(vec![
            t.to_json(&self.strings, &self.attributes)
        ]));
        letter.window = Some(window);
        self.out.push(Record::DeadLetter(letter));
    }

    /// Fires the slot's windows ending by `until`; `watermark` is what the
    /// rule set is told the time is.
    pub(super) fn fire_windows(&mut self, slot: usize, until: i64, watermark: i64) {
        for w in 0..self.slots[slot].windows.len() {
            let mut fired = std::mem::take(&mut self.fired);
            self.slots[slot].windows[w].fire(until, &self.strings, &mut fired);
            if fired.is_empty() {
                self.fired = fired;
                continue;
            }
            let spec = self.slots[slot].windows[w].name.clone();
            let with_state = self.slots[slot].windows[w].with_state;
            self.metrics
                .windows_fired
                .fetch_add(fired.len() as u64, Ordering::Relaxed);
            for chunk in fired.chunks(WINDOWS_PER_CALL) {
                let input = Input::Windows {
                    spec: &spec,
                    with_state,
                    fired: chunk,
                    watermark,
                };
                self.call(slot, input);
            }
            fired.clear();
            self.fired = fired;
        }
    }
}
