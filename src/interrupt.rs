//! Ctrl-C and SIGTERM: the first asks the run to stop at the next safe point,
//! the second ends the process at once (the journal is already on disk).

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Install the handler once per process.
pub fn install() {
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if REQUESTED.swap(true, Ordering::SeqCst) {
                std::process::exit(crate::error::ExitCode::Interrupted.code());
            }
        });
    });
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
