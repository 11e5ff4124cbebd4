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

/// The pause between polls of a pipeline run while they are steady: a run's end is noticed
/// within 3 s, at fewer than one request per 2 s.
pub const POLL_STEADY: Duration = Duration::from_millis(2500);

/// How many polls stay steady when they cost the service something: ten minutes' worth.
const STEADY_POLLS: u32 = 240;

/// The pause before poll number `polls` (from 0) of a pipeline run: steady while polls are
/// `free` (a conditional request the service answers "not modified" without counting it) and
/// for the first ten minutes, then backing off (`Backoff::POLL`). A rate limit the service
/// announces can only make it longer (see `Pipelines::rate_limit_pause`).
pub fn poll_pause(polls: u32, free: bool) -> Duration {
    if free || polls < STEADY_POLLS { POLL_STEADY } else { Backoff::POLL.pause(polls - STEADY_POLLS) }
}

impl Backoff {
    /// HTTP retries: about 0.25 s, 0.5 s, 1 s, ... up to 8 s, jittered.
    pub const HTTP: Backoff =
        Backoff { first: Duration::from_millis(250), factor: 2.0, cap: Duration::from_secs(8), jitter: 0.25 };
    /// Looking for something that should show up at once (the run a dispatch started): 1 s,
    /// then 1.5 times longer each time, up to 30 s.
    pub const FIND: Backoff =
        Backoff { first: Duration::from_secs(1), factor: 1.5, cap: Duration::from_secs(30), jitter: 0.0 };
    /// Polling a pipeline run once the steady polls are over: from 2.5 s, 1.5 times longer each
    /// poll, up to 15 s.
    pub const POLL: Backoff = Backoff { first: POLL_STEADY, factor: 1.5, cap: Duration::from_secs(15), jitter: 0.0 };
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
    use super::{Backoff, POLL_STEADY, poll_pause};
    use std::time::Duration;

    #[test]
    fn http_retries_grow_jittered_and_stay_bounded() {
        assert!(Backoff::HTTP.pause(0) < Duration::from_millis(400));
        assert!(Backoff::HTTP.pause(2) >= Duration::from_millis(750));
        assert!(Backoff::HTTP.pause(29) <= Duration::from_secs(8));
    }

    #[test]
    fn polls_start_quick_and_stay_under_half_a_minute() {
        assert_eq!(Backoff::FIND.pause(0).as_secs(), 1);
        assert_eq!(Backoff::FIND.pause(u32::MAX).as_secs(), 30);
        // A 60-second run: its end seen within 3 s, at fewer than 30 polls.
        let mut elapsed = Duration::ZERO;
        let mut polls = 0;
        while elapsed < Duration::from_secs(60) {
            let pause = poll_pause(polls, false);
            assert!(pause <= Duration::from_secs(3), "poll {polls}: {pause:?}");
            elapsed += pause;
            polls += 1;
        }
        assert!(polls <= 30, "{polls} polls for a 60-second run");
        // An hour of paid polls backs off to one every 15 s; free ones stay steady.
        assert_eq!(poll_pause(10_000, false), Duration::from_secs(15));
        assert_eq!(poll_pause(10_000, true), POLL_STEADY);
    }

    #[test]
    fn step_retries_double_from_two_seconds_up_to_32() {
        let pauses: Vec<u64> = (0..7).map(|n| Backoff::STEP_RETRY.pause(n).as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16, 32, 32, 32]);
    }
}
