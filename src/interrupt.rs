//! Ctrl-C, SIGTERM and a lost terminal (SIGHUP): the first asks the run to stop at the next
//! safe point; a second Ctrl-C or SIGTERM ends the process at once (the journal is on disk).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static HUNG_UP: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
/// Process groups of local commands this run started and has not seen end.
static CHILDREN: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Install the handlers once per process; signals are handled on a thread of their own.
pub fn install() {
    INSTALL.call_once(|| {
        let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else { return };
        std::thread::spawn(move || {
            for signal in signals.forever() {
                on_signal(signal);
            }
        });
    });
}

fn on_signal(signal: i32) {
    if signal == SIGHUP {
        // The terminal is gone: nobody can insist, so a hangup never ends the run abruptly.
        HUNG_UP.store(true, Ordering::SeqCst);
        REQUESTED.store(true, Ordering::SeqCst);
        return;
    }
    if REQUESTED.swap(true, Ordering::SeqCst) && !HUNG_UP.load(Ordering::SeqCst) {
        for group in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = killpg(Pid::from_raw(*group), Signal::SIGKILL);
        }
        std::process::exit(crate::error::ExitCode::Interrupted.code());
    }
}

/// A local command's process group, killed if the operator insists (a second Ctrl-C).
pub fn track_group(group: i32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(group);
}

/// The process group has ended.
pub fn forget_group(group: i32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).retain(|g| *g != group);
}

/// Whether the operator asked the run to stop (or the terminal went away).
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Whether the stop was asked by a lost terminal (SIGHUP) rather than a person.
pub fn hung_up() -> bool {
    HUNG_UP.load(Ordering::SeqCst)
}

/// Sleep up to `duration`, waking early when an interrupt arrives; true if interrupted.
pub fn sleep(duration: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + duration;
    loop {
        if requested() {
            return true;
        }
        let now = std::time::Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep((until - now).min(std::time::Duration::from_millis(50)));
    }
}
