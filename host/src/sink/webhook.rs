//! Webhooks: alerts posted to Slack, Discord or any endpoint that takes JSON.
//!
//! Each webhook has a bounded queue and a thread of its own that batches,
//! paces, posts and retries. The stream only offers alerts to the queue: a
//! full queue drops the alert (counted), so a slow or failing webhook never
//! holds the stream up. Delivery is at least once: a run resumed from a
//! checkpoint raises again the alerts after it, and posts them again (the
//! `json` body carries each alert's `_id`, so a receiver can drop repeats).

use super::{AlertRecord, Record};
use crate::config::{shown_url, SeverityName, WebhookConfig, WebhookFormat};
use crate::metrics::Metrics;
use crate::runtime::bindings::types::Severity;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the webhooks may take, once the run ends, to post what they
/// hold; alerts still queued then are counted as failed.
const DRAIN: Duration = Duration::from_secs(10);
/// The longest backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Discord refuses a message of more characters.
const DISCORD_MAX: usize = 2_000;

/// An alert waiting to be posted.
struct Queued {
    /// As in `alerts.jsonl`.
    json: String,
    rule_set: String,
    kind: String,
    severity: Severity,
    score: f64,
    customer: Option<String>,
    transaction: Option<String>,
    reason: String,
    event_time: i64,
}

fn rank(s: Severity) -> SeverityName {
    match s {
        Severity::Low => SeverityName::Low,
        Severity::Medium => SeverityName::Medium,
        Severity::High => SeverityName::High,
        Severity::Critical => SeverityName::Critical,
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// One webhook: its filters and its queue.
struct Hook {
    name: String,
    rules: Vec<String>,
    kinds: Vec<String>,
    min_severity: SeverityName,
    queue: Option<SyncSender<Arc<Queued>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hook {
    fn wants(&self, a: &AlertRecord) -> bool {
        let rule_set = a.rule_set.split('@').next().unwrap_or("");
        (self.rules.is_empty() || self.rules.iter().any(|r| r == rule_set))
            && (self.kinds.is_empty()
                || self
                    .kinds
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(&a.alert.kind)))
            && rank(a.alert.severity) >= self.min_severity
    }
}

/// Every configured webhook.
pub struct Webhooks {
    hooks: Vec<Hook>,
    metrics: Arc<Metrics>,
    /// Set when the run ends: the threads post what they hold, for at
    /// most [`DRAIN`], and stop.
    closing: Arc<AtomicBool>,
}

impl Webhooks {
    /// Starts a thread per webhook of `configs`.
    pub fn start(configs: &[WebhookConfig], metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let mut hooks = Vec::with_capacity(configs.len());
        let closing = Arc::new(AtomicBool::new(false));
        for (n, config) in configs.iter().enumerate() {
            let name = (config.name.clone()).unwrap_or_else(|| format!("webhook-{}", n + 1));
            let (queue, queued) = sync_channel(config.queue);
            metrics.webhook(&name, |s| s.url = shown_url(&config.url));
            let poster = Poster {
                name: name.clone(),
                config: config.clone(),
                metrics: metrics.clone(),
                drain: Drain {
                    closing: closing.clone(),
                    until: None,
                },
            };
            let thread = std::thread::Builder::new()
                .name(format!("edge-{name}"))
                .spawn(move || poster.run(queued))?;
            hooks.push(Hook {
                name,
                rules: config.rules.clone(),
                kinds: config.kinds.clone(),
                min_severity: config.min_severity,
                queue: Some(queue),
                thread: Some(thread),
            });
        }
        Ok(Self {
            hooks,
            metrics,
            closing,
        })
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Queues `record`, if an alert, for every webhook that takes it; never waits.
    pub fn offer(&self, record: &Record) {
        let Record::Alert(a) = record else {
            return;
        };
        // Made once, for the first webhook that takes the alert, and shared.
        let mut shared: Option<Arc<Queued>> = None;
        for hook in self.hooks.iter().filter(|h| h.wants(a)) {
            let Some(queue) = &hook.queue else {
                continue;
            };
            let queued = shared.get_or_insert_with(|| {
                let mut json = Vec::new();
                record.write_json(&mut json);
                Arc::new(Queued {
                    json: String::from_utf8_lossy(&json).into_owned(),
                    rule_set: a.rule_set.clone(),
                    kind: a.alert.kind.clone(),
                    severity: a.alert.severity,
                    score: a.alert.score,
                    customer: a.alert.customer_id.clone(),
                    transaction: a.alert.transaction_id.clone(),
                    reason: a.alert.reason.clone(),
                    event_time: a.alert.event_time,
                })
            });
            match queue.try_send(queued.clone()) {
                Ok(()) => self.metrics.webhook(&hook.name, |s| s.queued += 1),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    let mut first = false;
                    self.metrics.webhook(&hook.name, |s| {
                        first = s.dropped == 0;
                        s.dropped += 1;
                    });
                    if first {
                        tracing::warn!(
                            webhook = %hook.name,
                            "webhook queue full: alerts are dropped until it drains \
                             (counted as dropped; raise webhooks.queue or max-per-minute)"
                        );
                    }
                }
            }
        }
    }
}

impl Drop for Webhooks {
    /// Lets every webhook post what it holds, for at most [`DRAIN`].
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        for hook in &mut self.hooks {
            hook.queue = None;
            if let Some(thread) = &hook.thread {
                thread.thread().unpark();
            }
        }
        for hook in &mut self.hooks {
            if let Some(thread) = hook.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// A webhook's thread.
struct Poster {
    name: String,
    config: WebhookConfig,
    metrics: Arc<Metrics>,
    drain: Drain,
}

/// The end of a run, as a webhook's thread waits for it.
struct Drain {
    closing: Arc<AtomicBool>,
    /// When the run ended plus [`DRAIN`].
    until: Option<Instant>,
}

impl Drain {
    /// Waits until `at`; false, at once, when the run ended and `at` is
    /// past the time left to post.
    fn wait(&mut self, at: Instant) -> bool {
        loop {
            if self.closing.load(Ordering::SeqCst) {
                let end = *self.until.get_or_insert_with(|| Instant::now() + DRAIN);
                if at > end {
                    return false;
                }
            }
            let now = Instant::now();
            if now >= at {
                return true;
            }
            std::thread::park_timeout(at - now);
        }
    }
}

/// How a post ended.
enum Outcome {
    Sent,
    /// Worth trying again, after at least the given wait.
    Retry(String, Option<Duration>),
    /// Refused for good.
    Refused(String),
}

impl Poster {
    fn run(mut self, queued: Receiver<Arc<Queued>>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(self.config.timeout_ms.max(1))))
            .http_status_as_error(false)
            .build()
            .into();
        let spacing = Duration::from_secs(60) / self.config.max_per_minute.max(1);
        let batch_wait = Duration::from_millis(self.config.batch_ms);
        let mut next_post = Instant::now();
        loop {
            // The first alert of a batch, then more for up to batch-ms.
            let mut batch = Vec::new();
            match queued.recv() {
                Ok(q) => batch.push(q),
                Err(_) => return,
            }
            let until = Instant::now() + batch_wait;
            while batch.len() < self.config.batch_max {
                let wait = until.saturating_duration_since(Instant::now());
                match queued.recv_timeout(wait) {
                    Ok(q) => batch.push(q),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            let n = batch.len() as u64;
            self.metrics
                .webhook(&self.name, |s| s.queued = s.queued.saturating_sub(n));
            if !self.drain.wait(next_post) {
                self.given_up(n, "the run ended before it could be posted");
                continue;
            }
            next_post = Instant::now() + spacing;
            let body = self.body(&batch);
            let mut backoff = Duration::from_millis(self.config.backoff_ms.max(1));
            let mut attempt = 0;
            loop {
                match self.post(&agent, &body) {
                    Outcome::Sent => {
                        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
                        self.metrics.webhook(&self.name, |s| {
                            s.sent += n;
                            s.posts += 1;
                            s.last_success_ms = Some(now);
                            s.failing = false;
                        });
                        break;
                    }
                    Outcome::Refused(error) => {
                        self.given_up(n, &error);
                        break;
                    }
                    Outcome::Retry(error, after) => {
                        attempt += 1;
                        let wait = after.unwrap_or(backoff).min(MAX_BACKOFF);
                        if attempt > self.config.retries {
                            self.given_up(n, &error);
                            break;
                        }
                        tracing::debug!(webhook = %self.name, "post failed ({error}); again in {wait:?}");
                        self.metrics.webhook(&self.name, |s| {
                            s.retries += 1;
                            s.last_error = Some(error.clone());
                        });
                        if !self.drain.wait(Instant::now() + wait) {
                            self.given_up(n, &error);
                            break;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
    }

    fn given_up(&self, n: u64, error: &str) {
        tracing::warn!(
            webhook = %self.name,
            url = %shown_url(&self.config.url),
            "{n} alert(s) not posted: {error}"
        );
        self.metrics.webhook(&self.name, |s| {
            s.failed += n;
            s.failing = true;
            s.last_error = Some(error.to_string());
        });
    }

    fn post(&self, agent: &ureq::Agent, body: &str) -> Outcome {
        let mut request = agent
            .post(&self.config.url)
            .header("content-type", "application/json");
        for (key, value) in &self.config.headers {
            request = request.header(key, value);
        }
        match request.send(body) {
            Ok(response) => {
                let status = response.status().as_u16();
                if (200..300).contains(&status) {
                    return Outcome::Sent;
                }
                let after = (response.headers().get("retry-after"))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let error = format!("the endpoint answered {status}");
                if status == 429 || status >= 500 {
                    Outcome::Retry(error, after)
                } else {
                    Outcome::Refused(format!(
                        "{error} (not retried: fix the webhook's URL or body)"
                    ))
                }
            }
            Err(e) => Outcome::Retry(format!("no answer: {e}"), None),
        }
    }

    /// The body of a post of `batch`, in the webhook's format.
    fn body(&self, batch: &[Arc<Queued>]) -> String {
        match self.config.format {
            WebhookFormat::Json => {
                let mut out = format!(r#"{{"source":"edge","count":{},"alerts":["#, batch.len());
                for (n, q) in batch.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    out.push_str(&q.json);
                }
                out.push_str("]}");
                out
            }
            WebhookFormat::Slack => serde_json::json!({ "text": text(batch, "*") }).to_string(),
            WebhookFormat::Discord => {
                let mut content = text(batch, "**");
                if content.chars().count() > DISCORD_MAX {
                    content = content.chars().take(DISCORD_MAX - 1).collect();
                    content.push('…');
                }
                serde_json::json!({ "content": content, "username": "edge" }).to_string()
            }
        }
    }
}

/// A chat message for `batch`, `bold` being the markup's bold marker.
fn text(batch: &[Arc<Queued>], bold: &str) -> String {
    let mut out = format!(
        "edge: {} alert{}",
        batch.len(),
        if batch.len() == 1 { "" } else { "s" }
    );
    for q in batch {
        let rule_set = q.rule_set.split('+').next().unwrap_or(&q.rule_set);
        out.push_str(&format!(
            "\n• {bold}{}{bold} {} ({:.2}) from {rule_set}",
            q.kind,
            severity_name(q.severity),
            q.score
        ));
        if let Some(c) = &q.customer {
            out.push_str(&format!(", customer `{c}`"));
        }
        if let Some(t) = &q.transaction {
            out.push_str(&format!(", transaction `{t}`"));
        }
        out.push_str(&format!(
            " at {}: {}",
            crate::model::iso_time(q.event_time),
            q.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_show_their_host_only() {
        assert_eq!(
            shown_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/..."
        );
        assert_eq!(
            shown_url("http://user:pw@127.0.0.1:9/x?y"),
            "http://127.0.0.1:9/..."
        );
        assert_eq!(shown_url("http://127.0.0.1:9"), "http://127.0.0.1:9");
        assert_eq!(shown_url("hooks.slack.com/x"), "(not a URL)");
    }
}
