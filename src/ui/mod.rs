//! All terminal output goes through `Ui`: human text, prompts and progress on stderr,
//! command output and JSON events on stdout. A closed stdout pipe is not an error.

pub mod progress;
pub mod prompt;

use std::fmt::Display;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use console::Style;

use crate::cli::{Cli, ColorChoice};
use crate::error::Error;
use crate::redact;

/// Set to `1` to treat stdin as a terminal (tests drive prompts through a pipe with it).
pub const FORCE_INTERACTIVE_ENV: &str = "ROLLOUT_FORCE_INTERACTIVE";

#[derive(Debug)]
pub struct Ui {
    color: bool,
    quiet: bool,
    verbose: bool,
    json: bool,
    stderr_is_terminal: bool,
    interactive: bool,
    /// None while stdout takes output; the error that ended it, once one did.
    stdout_lost: Mutex<Option<io::Error>>,
    stderr_open: AtomicBool,
    prompt: prompt::Lines,
}

impl Ui {
    pub fn new(cli: &Cli) -> Ui {
        let stderr_is_terminal = io::stderr().is_terminal();
        let color = match cli.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stderr_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        };
        let forced = std::env::var(FORCE_INTERACTIVE_ENV).is_ok_and(|v| v == "1");
        Ui {
            color,
            quiet: cli.quiet,
            verbose: cli.verbose,
            json: cli.json,
            stderr_is_terminal,
            interactive: forced || io::stdin().is_terminal(),
            stdout_lost: Mutex::new(None),
            stderr_open: AtomicBool::new(true),
            prompt: prompt::Lines::default(),
        }
    }

    /// A Ui that shows nothing and asks nothing: for work in another thread (the preflight in
    /// the background), which reports what it found instead.
    pub fn muted(&self) -> Ui {
        Ui {
            color: self.color,
            quiet: true,
            verbose: false,
            json: false,
            stderr_is_terminal: false,
            interactive: false,
            stdout_lost: Mutex::new(Some(io::Error::other("muted"))),
            stderr_open: AtomicBool::new(false),
            prompt: prompt::Lines::default(),
        }
    }

    /// Whether someone can answer prompts (stdin is a terminal, or the test hook says so).
    pub fn interactive(&self) -> bool {
        self.interactive
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// `--json`: commands write JSON objects on stdout instead of tables.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Progress only on a terminal and not when quiet.
    pub fn shows_progress(&self) -> bool {
        self.stderr_is_terminal && !self.quiet
    }

    /// Every line of human text goes out here, scrubbed of secrets.
    fn to_stderr(&self, text: impl Display) {
        self.write_stderr(&format!("{}\n", redact::scrub(&text.to_string())));
    }

    /// Write to stderr, if it is still there. A closed pipe, a full disk or a lost terminal
    /// ends the output, never the run: the journal has every event either way.
    fn write_stderr(&self, text: &str) {
        if !self.stderr_open.load(Ordering::Relaxed) {
            return;
        }
        let mut stderr = io::stderr().lock();
        if stderr.write_all(text.as_bytes()).and_then(|()| stderr.flush()).is_err() {
            self.stderr_open.store(false, Ordering::Relaxed);
        }
    }

    /// Whether human output still reaches someone: a prompt nobody can see is not asked.
    pub fn stderr_open(&self) -> bool {
        self.stderr_open.load(Ordering::Relaxed)
    }

    /// Human text: stderr, unless `--quiet`.
    pub fn say(&self, text: impl Display) {
        if !self.quiet {
            self.to_stderr(text);
        }
    }

    /// Detail for `--verbose` only.
    pub fn detail(&self, text: impl Display) {
        if self.verbose {
            self.to_stderr(self.dim(text));
        }
    }

    /// Human text that `--quiet` does not hide: results, warnings, what the operator must read.
    pub fn always(&self, text: impl Display) {
        self.to_stderr(text);
    }

    pub fn warn(&self, text: impl Display) {
        self.to_stderr(format!("{} {text}", self.paint(Style::new().yellow().bold(), "warning:")));
    }

    pub fn error(&self, error: &Error) {
        let label = self.paint(Style::new().red().bold(), "error:");
        let text = format!("{:#}", error.error);
        let mut lines = text.lines();
        self.to_stderr(format!("{label} {}", lines.next().unwrap_or_default()));
        for line in lines {
            self.to_stderr(format!("  {line}"));
        }
        for hint in &error.hints {
            self.to_stderr(format!("{} {hint}", self.paint(Style::new().cyan().bold(), "hint:")));
        }
    }

    /// A line of command output on stdout; once the reader has gone, output stops quietly.
    pub fn stdout(&self, text: impl Display) {
        let mut lost = self.stdout_lost.lock().unwrap_or_else(|e| e.into_inner());
        if lost.is_none()
            && let Err(error) = writeln!(io::stdout().lock(), "{}", redact::scrub(&text.to_string()))
        {
            *lost = Some(error);
        }
    }

    /// Why stdout stopped taking output, when that was not its reader going away (a closed
    /// pipe, `| head`): a full disk, say. For commands whose output is their result.
    pub fn stdout_failure(&self) -> Option<String> {
        let lost = self.stdout_lost.lock().unwrap_or_else(|e| e.into_inner());
        lost.as_ref().filter(|e| e.kind() != io::ErrorKind::BrokenPipe).map(|e| e.to_string())
    }

    /// One JSON event on stdout, when `--json` was given.
    pub fn event(&self, line: &str) {
        if self.json {
            self.stdout(line);
        }
    }

    pub fn paint(&self, style: Style, text: impl Display) -> String {
        style.force_styling(self.color).apply_to(text).to_string()
    }

    pub fn bold(&self, text: impl Display) -> String {
        self.paint(Style::new().bold(), text)
    }

    pub fn dim(&self, text: impl Display) -> String {
        self.paint(Style::new().dim(), text)
    }

    pub fn good(&self, text: impl Display) -> String {
        self.paint(Style::new().green().bold(), text)
    }

    pub fn bad(&self, text: impl Display) -> String {
        self.paint(Style::new().red().bold(), text)
    }

    pub fn caution(&self, text: impl Display) -> String {
        self.paint(Style::new().yellow().bold(), text)
    }
}
