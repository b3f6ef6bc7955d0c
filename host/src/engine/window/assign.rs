//! Which windows an event time belongs to.

/// Tumbling windows of `size`: the one window `[start, start + size)` holding `t`.
pub fn tumbling(t: i64, size: i64) -> (i64, i64) {
    let start = t - t.rem_euclid(size);
    (start, start + size)
}

/// Sliding windows of `size` every `slide`: every window holding `t`, latest first.
pub fn sliding(t: i64, size: i64, slide: i64) -> impl Iterator<Item = (i64, i64)> {
    let last = t - t.rem_euclid(slide);
    (0..)
        .map(move |k| last - k * slide)
        .take_while(move |start| *start > t - size)
        .map(move |start| (start, start + size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_aligns_to_the_epoch() {
        assert_eq!(tumbling(0, 10), (0, 10));
        assert_eq!(tumbling(9, 10), (0, 10));
        assert_eq!(tumbling(10, 10), (10, 20));
        assert_eq!(tumbling(-1, 10), (-10, 0));
    }

    #[test]
    fn sliding_covers_every_window_holding_the_event() {
        let w: Vec<_> = sliding(25, 30, 10).collect();
        assert_eq!(w, vec![(20, 50), (10, 40), (0, 30)]);
        let w: Vec<_> = sliding(20, 30, 10).collect();
        assert_eq!(w, vec![(20, 50), (10, 40), (0, 30)]);
        let w: Vec<_> = sliding(5, 10, 10).collect();
        assert_eq!(w, vec![(0, 10)]);
    }
}
