//! Jitter: every delay the operator spreads (retries, resyncs, observation rounds, the client's
//! in-place repeats) is spread the same way, so that many profiles or instances do not act in step.

use std::time::Duration;

/// `d` times a uniformly random factor in `[1 - fraction, 1 + fraction)`: `jitter(d, 0.25)` is `d` ±25%.
pub fn jitter(d: Duration, fraction: f64) -> Duration {
    d.mul_f64(rand::random_range(1.0 - fraction..1.0 + fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_within_the_fraction_both_ways() {
        let d = Duration::from_secs(100);
        let spread: Vec<Duration> = (0..1000).map(|_| jitter(d, 0.25)).collect();
        let outside = spread.iter().find(|j| !(Duration::from_secs(75)..Duration::from_secs(125)).contains(*j));
        assert_eq!(outside, None, "within ±25%");
        assert!(
            spread.iter().any(|j| *j < Duration::from_secs(90)) && spread.iter().any(|j| *j > Duration::from_secs(110))
        );
    }
}
