//! How long to pause before trying again: one exponential backoff with a cap and optional
//! jitter, and the three paces rollout uses (HTTP retries, polling, step retries).

use std::time::Duration;

/// `first`, then `factor` times longer each time, never over `cap`; `jitter` spreads each pause
/// by up to that share either way (0.25: from 75% to 125%, still capped).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub factor: f64,
    pub cap: Duration,
    pub jitter: f64,
}

impl Backoff {
    /// HTTP retries: about 0.25 s, 0.5 s, 1 s, ... up to 8 s, jittered.
    pub const HTTP: Backoff =
        Backoff { first: Duration::from_millis(250), factor: 2.0, cap: Duration::from_secs(8), jitter: 0.25 };
    /// Polling a run: 1 s, then 1.5 times longer each poll, up to 30 s: a 5-minute run costs
    /// about 17 polls.
    pub const POLL: Backoff =
        Backoff { first: Duration::from_secs(1), factor: 1.5, cap: Duration::from_secs(30), jitter: 0.0 };
    /// Retrying a failed step: 2 s, 4 s, 8 s, ... up to 32 s.
    pub const STEP_RETRY: Backoff =
        Backoff { first: Duration::from_secs(2), factor: 2.0, cap: Duration::from_secs(32), jitter: 0.0 };

    /// The pause after `waited` earlier pauses (from 0).
    pub fn pause(&self, waited: u32) -> Duration {
        let cap = self.cap.as_secs_f64();
        let base = (self.first.as_secs_f64() * self.factor.powi(waited.min(i32::MAX as u32) as i32)).min(cap);
        let spread =
            if self.jitter > 0.0 { 1.0 - self.jitter + rand::random::<f64>() * 2.0 * self.jitter } else { 1.0 };
        Duration::from_secs_f64((base * spread).min(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn http_retries_grow_jittered_and_stay_bounded() {
        assert!(Backoff::HTTP.pause(0) < Duration::from_millis(400));
        assert!(Backoff::HTTP.pause(2) >= Duration::from_millis(750));
        assert!(Backoff::HTTP.pause(29) <= Duration::from_secs(8));
    }

    #[test]
    fn polls_start_quick_and_stay_under_half_a_minute() {
        assert_eq!(Backoff::POLL.pause(0).as_secs(), 1);
        assert!(Backoff::POLL.pause(5).as_secs_f64() > 7.0);
        assert_eq!(Backoff::POLL.pause(50).as_secs(), 30);
        assert_eq!(Backoff::POLL.pause(u32::MAX).as_secs(), 30);
        let mut elapsed = 0.0;
        let mut polls = 0;
        while elapsed < 300.0 {
            elapsed += Backoff::POLL.pause(polls).as_secs_f64();
            polls += 1;
        }
        assert!(polls < 20, "{polls} polls for a 5-minute run");
    }

    #[test]
    fn step_retries_double_from_two_seconds_up_to_32() {
        let pauses: Vec<u64> = (0..7).map(|n| Backoff::STEP_RETRY.pause(n).as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16, 32, 32, 32]);
    }
}
