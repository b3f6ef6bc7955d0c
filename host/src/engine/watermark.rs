//! Event-time watermarks with bounded out-of-orderness.
//!
//! The watermark trails the largest event time seen by the bound: it promises
//! that events older than it are not expected any more. A window `[start, end)`
//! fires when the watermark reaches `end`.

/// A watermark generator.
#[derive(Clone, Debug)]
pub struct Watermark {
    bound_ms: i64,
    max_event_time: i64,
    closed: bool,
}

impl Watermark {
    /// A watermark trailing the largest event time by `bound_ms`.
    pub fn new(bound_ms: i64) -> Self {
        Self {
            bound_ms,
            max_event_time: i64::MIN,
            closed: false,
        }
    }

    /// Takes an event time into account.
    pub fn observe(&mut self, event_time: i64) {
        self.max_event_time = self.max_event_time.max(event_time);
    }

    /// The current watermark (`i64::MIN` before any event, `i64::MAX` once closed).
    pub fn current(&self) -> i64 {
        if self.closed {
            i64::MAX
        } else if self.max_event_time == i64::MIN {
            i64::MIN
        } else {
            self.max_event_time.saturating_sub(self.bound_ms)
        }
    }

    /// The input is over: everything may fire.
    pub fn close(&mut self) {
        self.closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_the_maximum_and_never_goes_back() {
        let mut w = Watermark::new(5_000);
        assert_eq!(w.current(), i64::MIN);
        w.observe(10_000);
        assert_eq!(w.current(), 5_000);
        w.observe(8_000);
        assert_eq!(w.current(), 5_000);
        w.observe(20_000);
        assert_eq!(w.current(), 15_000);
        w.close();
        assert_eq!(w.current(), i64::MAX);
    }
}
