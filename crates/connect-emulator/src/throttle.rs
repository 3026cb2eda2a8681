//! Connect's request quota: one exact token bucket for every Connect API call of the account and Region
//! (STS and the `/_emulator/` control API do not count).
//!
//! The bucket holds up to `burst` tokens and refills continuously at `rate` tokens per second. A request
//! takes one token at the instant its request head arrives, or, when less than one token is left, is
//! answered ThrottlingException and takes nothing. It is kept in the GCRA form: the state is the instant
//! at which the bucket will be full again, in integer nanoseconds, so the refill does not drift however
//! long the emulator runs. The only rounding is in one constant, a token's worth of refill time: 10^9/rate
//! nanoseconds rounded to the nearest nanosecond (exact for rates that divide 10^9, such as 2/s; off by at
//! most half a nanosecond per token otherwise). The capacity is `burst` such tokens.

use std::time::Instant;

const NANOS_PER_SEC: f64 = 1e9;

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    /// Nanoseconds of refill one token is worth (rounded to the nearest nanosecond).
    cost: u128,
    /// Nanoseconds of refill the full bucket is worth: `burst` tokens.
    capacity: u128,
    /// Times are nanoseconds since this instant.
    epoch: Instant,
    /// When the bucket will be full again (if no request takes a token before), in nanoseconds since `epoch`.
    full_at: u128,
}

impl TokenBucket {
    /// A full bucket; `rate` 0 (or less) disables throttling.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let mut bucket = Self { rate: 0.0, burst: 0.0, cost: 0, capacity: 0, epoch: now, full_at: 0 };
        bucket.set_rate(rate, burst);
        bucket
    }

    fn set_rate(&mut self, rate: f64, burst: f64) {
        self.rate = rate;
        self.burst = burst;
        if rate > 0.0 {
            // `as` saturates: a tiny rate makes a huge cost, never an overflow.
            self.cost = ((NANOS_PER_SEC / rate).round() as u128).max(1);
            self.capacity = (burst.max(0.0) * self.cost as f64).floor() as u128;
        }
    }

    fn nanos(&self, at: Instant) -> u128 {
        at.saturating_duration_since(self.epoch).as_nanos()
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Takes a token at `at`: `false` (and nothing taken) when less than one token is left.
    pub fn take(&mut self, at: Instant) -> bool {
        if !self.enabled() {
            return true;
        }
        let at = self.nanos(at);
        // The bucket holds `capacity - (full_at - at)` nanoseconds' worth; at least `cost` is needed.
        let full_after = self.full_at.max(at).saturating_add(self.cost);
        if full_after <= at.saturating_add(self.capacity) {
            self.full_at = full_after;
            true
        } else {
            false
        }
    }

    /// The tokens in the bucket at `at` (`burst` when throttling is off).
    pub fn tokens(&self, at: Instant) -> f64 {
        if !self.enabled() {
            return self.burst;
        }
        let missing = self.full_at.saturating_sub(self.nanos(at)) as f64 / self.cost as f64;
        (self.burst - missing).max(0.0)
    }

    /// New rate and burst from `at` on. The bucket keeps the tokens it has (at most the new burst): changing
    /// the faults does not refill it. A bucket that was off starts full, as a new one does.
    pub fn reconfigure(&mut self, rate: f64, burst: f64, at: Instant) {
        if rate == self.rate && burst == self.burst {
            return;
        }
        let tokens = if self.enabled() { self.tokens(at).min(burst.max(0.0)) } else { burst.max(0.0) };
        self.set_rate(rate, burst);
        let at = self.nanos(at);
        self.full_at = if self.enabled() {
            let missing = ((burst.max(0.0) - tokens) * self.cost as f64).ceil() as u128;
            at.saturating_add(missing)
        } else {
            at
        };
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_burst_goes_at_once_then_one_token_per_interval() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 5.0, t0);
        assert!((0..5).all(|_| b.take(t0)), "a full bucket serves the burst");
        assert!(!b.take(t0), "the sixth at the same instant is throttled");
        assert!(!b.take(t0 + ms(499)), "499 ms refill less than a token");
        assert!(b.take(t0 + ms(500)), "exactly one token after 500 ms");
        assert!(!b.take(t0 + ms(500)));
    }

    #[test]
    fn a_throttled_request_takes_no_token() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 1.0, t0);
        assert!(b.take(t0));
        for i in 1..50 {
            assert!(!b.take(t0 + ms(i * 9)), "throttled at {} ms", i * 9);
        }
        assert!(b.take(t0 + ms(500)), "the 49 throttled requests took nothing");
    }

    #[test]
    fn exactly_the_rate_is_never_throttled_and_does_not_drift() {
        for (rate, interval_ns) in [(2.0, 500_000_000u64), (10.0, 100_000_000), (1000.0, 1_000_000), (3.0, 333_333_333)]
        {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate, 5.0, t0);
            assert!((0..5).all(|_| b.take(t0)));
            for k in 1..=100_000u64 {
                let at = t0 + Duration::from_nanos(k * interval_ns);
                assert!(b.take(at), "rate {rate}: call {k} after the burst, at exactly the rate, was throttled");
            }
        }
    }

    #[test]
    fn one_percent_faster_is_throttled_and_accepted_calls_equal_burst_plus_rate_times_window() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 5.0, t0);
        assert!((0..5).all(|_| b.take(t0)));
        // 1% faster than 2/s: every 495 ms.
        let throttled = (1..=200u64).filter(|k| !b.take(t0 + ms(k * 495))).count();
        assert!(throttled > 0, "1% over the rate must meet throttling");
        // A client far over the rate, for 60 s: exactly burst + rate * window calls get through.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 5.0, t0);
        let accepted = (0..=60_000u64).filter(|k| b.take(t0 + ms(*k))).count();
        assert_eq!(accepted, 5 + 2 * 60, "burst 5 + 2/s * 60 s, the call at exactly 60 s included");
    }

    #[test]
    fn changing_the_faults_does_not_refill_the_bucket() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 5.0, t0);
        assert!((0..5).all(|_| b.take(t0)));
        b.reconfigure(2.0, 5.0, t0);
        assert!(!b.take(t0), "the same faults again: still empty");
        b.reconfigure(2.0, 10.0, t0);
        assert!(!b.take(t0), "a larger burst: still empty");
        assert!((b.tokens(t0 + ms(1000)) - 2.0).abs() < 1e-9, "refills at the rate: {}", b.tokens(t0 + ms(1000)));
        b.reconfigure(2.0, 1.0, t0 + ms(5000));
        assert!(b.take(t0 + ms(5000)) && !b.take(t0 + ms(5000)), "a smaller burst caps the tokens");
        b.reconfigure(0.0, 5.0, t0 + ms(5000));
        assert!((0..100).all(|_| b.take(t0 + ms(5000))), "rate 0 disables throttling");
        b.reconfigure(2.0, 7.0, t0 + ms(5000));
        assert_eq!(b.tokens(t0 + ms(5000)), 7.0, "re-enabled: full, like a new bucket");
    }

    #[test]
    fn a_burst_below_one_throttles_everything() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.001, 0.0, t0);
        assert!(!b.take(t0) && !b.take(t0 + ms(60_000)));
    }
}
