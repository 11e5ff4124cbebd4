//! Spinners for anything that waits, drawn by indicatif on stderr only when it is a terminal.
//! Without one, a single line says what is being waited for.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::Ui;

impl Ui {
    /// A spinner with the elapsed time; hidden when stderr is not a terminal or `--quiet`.
    pub fn spinner(&self, message: impl Into<String>) -> ProgressBar {
        let message = message.into();
        let message = crate::redact::scrub(&message).into_owned();
        if !self.shows_progress() {
            self.say(format!("  {message} ..."));
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {prefix} [{elapsed}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        if bar.is_hidden() {
            // A terminal indicatif will not draw on (TERM=dumb or unset): say it in plain text.
            self.say(format!("  {message} ..."));
            return bar;
        }
        bar.set_prefix(crate::redact::scrub(&message).into_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }
}
