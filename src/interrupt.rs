//! Ctrl-C and SIGTERM: the first asks the run to stop at the next safe point,
//! the second ends the process at once (the journal is already on disk).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
/// Process groups of local commands this run started and has not seen end.
static CHILDREN: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Install the handler once per process.
pub fn install() {
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if REQUESTED.swap(true, Ordering::SeqCst) {
                for group in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    let _ = killpg(Pid::from_raw(*group), Signal::SIGKILL);
                }
                std::process::exit(crate::error::ExitCode::Interrupted.code());
            }
        });
    });
}

/// A local command's process group, killed if the operator insists (a second Ctrl-C).
pub fn track_group(group: i32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(group);
}

/// The process group has ended.
pub fn forget_group(group: i32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).retain(|g| *g != group);
}

/// Whether the operator asked the run to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
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
