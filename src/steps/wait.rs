//! Waiting for something outside rollout to finish: a spinner with the elapsed time, a
//! deadline, backoff with the service's rate-limit pause, and Ctrl-C. Every polling step uses it.

use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::ProgressBar;

use super::Context;
use crate::interrupt;
use crate::ui::Ui;

/// What one poll found.
pub enum Poll<T> {
    Ready(T),
    /// Not yet; the text replaces the spinner's message.
    Pending(String),
}

/// How a wait ended without an error.
pub enum Ended<T> {
    Ready(T),
    /// The deadline came first; the wait it allowed, to the second.
    TimedOut(Duration),
    /// The operator pressed Ctrl-C.
    Interrupted,
}

/// How often to poll.
pub struct Policy<'a> {
    /// The pause after poll number `polls` (from 0).
    pub interval: &'a dyn Fn(u32) -> Duration,
    /// The least pause the service's rate limit asks for, from its last answer.
    pub rate_limit: &'a dyn Fn() -> Option<Duration>,
}

/// The spinner a poll may speak over.
pub struct Progress<'a> {
    ui: &'a Ui,
    spinner: &'a ProgressBar,
}

impl Progress<'_> {
    /// A warning printed above the spinner, which goes on.
    pub fn warn(&self, message: String) {
        self.spinner.suspend(|| self.ui.warn(message));
    }

    /// Run `f` (a question to the operator) with the spinner out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce(&Ui) -> R) -> R {
        self.spinner.suspend(|| f(self.ui))
    }
}

/// Poll until `poll` is ready, for at most `timeout` and never past the step's deadline, with
/// `waiting for {label}` on the spinner. The spinner is cleared however the wait ends.
pub fn until<T>(
    cx: &Context,
    label: &str,
    timeout: Duration,
    policy: &Policy,
    poll: impl FnMut(&Progress) -> Result<Poll<T>>,
) -> Result<Ended<T>> {
    let started = Instant::now();
    let deadline = cx.deadline.map_or(started + timeout, |d| d.min(started + timeout));
    let spinner = cx.ui.spinner(format!("waiting for {label}"));
    let ended = polls(&Progress { ui: cx.ui, spinner: &spinner }, started..deadline, policy, poll);
    spinner.finish_and_clear();
    ended
}

/// The polls themselves. The last one comes at the deadline itself, not a whole interval
/// before it.
fn polls<T>(
    progress: &Progress,
    Range { start, end: deadline }: Range<Instant>,
    policy: &Policy,
    mut poll: impl FnMut(&Progress) -> Result<Poll<T>>,
) -> Result<Ended<T>> {
    let mut polls = 0;
    // The service's last answer (a preview's read, a trigger) may have asked for a pause.
    if let Some(pause) = (policy.rate_limit)()
        && interrupt::sleep(pause.min(deadline.saturating_duration_since(Instant::now())))
    {
        return Ok(Ended::Interrupted);
    }
    loop {
        match poll(progress)? {
            Poll::Ready(value) => return Ok(Ended::Ready(value)),
            Poll::Pending(message) => progress.spinner.set_message(message),
        }
        let now = Instant::now();
        if now >= deadline {
            let allowed = (deadline - start).as_secs_f64().round() as u64;
            return Ok(Ended::TimedOut(Duration::from_secs(allowed)));
        }
        let pause = (policy.interval)(polls).max((policy.rate_limit)().unwrap_or_default());
        if interrupt::sleep(pause.min(deadline - now)) {
            return Ok(Ended::Interrupted);
        }
        polls = polls.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use clap::Parser;

    use super::{Ended, Policy, Poll, until};
    use crate::cli::Cli;
    use crate::steps::{Context, Projection};
    use crate::ui::Ui;

    fn waits<T>(timeout: Duration, mut poll: impl FnMut() -> anyhow::Result<Poll<T>>) -> anyhow::Result<Ended<T>> {
        let ui = Ui::new(&Cli::parse_from(["rollout", "--quiet", "list"]));
        let projection = Projection::default();
        let journal = |_: crate::steps::Note| Ok(());
        let cx = Context {
            ui: &ui,
            run_id: "r1",
            deadline: None,
            projection: &projection,
            progress: String::new(),
            journal: &journal,
            earlier_run: None,
            yes: false,
        };
        let policy = Policy { interval: &|_| Duration::from_millis(5), rate_limit: &|| None };
        until(&cx, "the thing", timeout, &policy, |_| poll())
    }

    #[test]
    fn polls_until_ready() {
        let mut polls = 0;
        let ended = waits(Duration::from_secs(60), || {
            polls += 1;
            Ok(if polls == 3 { Poll::Ready(polls) } else { Poll::Pending(format!("poll {polls}")) })
        });
        assert!(matches!(ended, Ok(Ended::Ready(3))));
    }

    #[test]
    fn the_last_poll_comes_at_the_deadline() {
        let started = Instant::now();
        let mut last = started;
        let ended = waits(Duration::from_millis(40), || {
            last = Instant::now();
            Ok(Poll::<()>::Pending(String::new()))
        });
        assert!(matches!(ended, Ok(Ended::TimedOut(allowed)) if allowed == Duration::ZERO));
        assert!(last - started >= Duration::from_millis(40), "{:?}", last - started);
    }

    #[test]
    fn a_failed_poll_ends_the_wait() {
        let ended = waits(Duration::from_secs(60), || Err::<Poll<()>, _>(anyhow::anyhow!("lost track")));
        assert_eq!(format!("{:#}", ended.err().unwrap()), "lost track");
    }
}
