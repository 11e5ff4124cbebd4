//! The step prompt `[y]es / [s]kip / [a]bort / [d]etails`, read line by line from stdin
//! on a helper thread so that Ctrl-C is noticed while the operator thinks.

use std::io::{BufRead, IsTerminal};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::Ui;
use crate::interrupt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    Skip,
    Abort,
    Details,
}

/// Why a prompt ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    Interrupted,
    /// stdin reached its end: nobody is there to answer.
    Closed,
    /// The question cannot be shown: stderr is closed or the terminal is gone.
    Unseen,
}

/// Lines typed on stdin, read by one background thread started at the first prompt.
#[derive(Debug, Default)]
pub struct Lines {
    receiver: OnceLock<Mutex<Receiver<String>>>,
}

impl Lines {
    fn receiver(&self) -> &Mutex<Receiver<String>> {
        self.receiver.get_or_init(|| {
            let (sender, receiver) = mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
            Mutex::new(receiver)
        })
    }

    fn next(&self) -> Result<String, NoAnswer> {
        let receiver = self.receiver().lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if interrupt::requested() {
                return Err(NoAnswer::Interrupted);
            }
            match receiver.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => return Ok(line),
                Err(RecvTimeoutError::Timeout) => continue,
                // A lost terminal ends stdin and sends SIGHUP: give the signal a moment to land.
                Err(RecvTimeoutError::Disconnected) if interrupt::sleep(Duration::from_millis(200)) => {
                    return Err(NoAnswer::Interrupted);
                }
                Err(RecvTimeoutError::Disconnected) => return Err(NoAnswer::Closed),
            }
        }
    }
}

fn parse(text: &str) -> Option<Answer> {
    match text.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(Answer::Yes),
        "s" | "skip" => Some(Answer::Skip),
        "a" | "abort" => Some(Answer::Abort),
        "d" | "details" => Some(Answer::Details),
        _ => None,
    }
}

impl Ui {
    /// Ask until the operator gives a valid answer. An empty line picks `default`, if any.
    pub fn ask(&self, question: &str, default: Option<Answer>) -> Result<Answer, NoAnswer> {
        let choices = format!(
            "{} / {} / {} / {}",
            self.bold("[y]es"),
            self.bold("[s]kip"),
            self.bold("[a]bort"),
            self.bold("[d]etails")
        );
        let default_note = match default {
            Some(Answer::Skip) => " (Enter skips)",
            _ => "",
        };
        loop {
            self.write_stderr(&format!("  {question} {choices}{default_note} > "));
            if !self.stderr_open() {
                // Nobody can read the preview or the question: stop here, at a safe point.
                return Err(NoAnswer::Unseen);
            }
            let line = self.prompt.next().inspect_err(|_| self.write_stderr("\n"))?;
            if !std::io::stdin().is_terminal() {
                self.write_stderr(&format!("{}\n", line.trim()));
            }
            if line.trim().is_empty()
                && let Some(answer) = default
            {
                return Ok(answer);
            }
            match parse(&line) {
                Some(answer) => return Ok(answer),
                None => self.write_stderr("  Type y, s, a or d, then Enter.\n"),
            }
        }
    }
}

impl Ui {
    /// Ask the operator to type `word` to go on (for a change that takes no step back); true
    /// only when exactly that was typed.
    pub fn type_to_confirm(&self, question: &str, word: &str) -> Result<bool, NoAnswer> {
        self.write_stderr(&format!("  {question} Type {} to go on > ", self.bold(word)));
        if !self.stderr_open() {
            return Err(NoAnswer::Unseen);
        }
        let line = self.prompt.next().inspect_err(|_| self.write_stderr("\n"))?;
        if !std::io::stdin().is_terminal() {
            self.write_stderr(&format!("{}\n", line.trim()));
        }
        Ok(line.trim() == word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_take_letters_and_words_in_any_case() {
        assert_eq!(parse(" Y "), Some(Answer::Yes));
        assert_eq!(parse("skip"), Some(Answer::Skip));
        assert_eq!(parse("ABORT"), Some(Answer::Abort));
        assert_eq!(parse("d"), Some(Answer::Details));
        assert_eq!(parse(""), None);
        assert_eq!(parse("yolo"), None);
    }
}
