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

/// Which of `words` the operator typed: the word or its first letter, in any case.
fn parse(text: &str, words: &[&str]) -> Option<usize> {
    let typed = text.trim().to_ascii_lowercase();
    words.iter().position(|word| typed == *word || (typed.len() == 1 && word.starts_with(typed.as_str())))
}

impl Ui {
    /// Ask until the operator gives a valid answer. An empty line picks `default`, if any.
    pub fn ask(&self, question: &str, default: Option<Answer>) -> Result<Answer, NoAnswer> {
        const ANSWERS: [(&str, Answer); 4] =
            [("yes", Answer::Yes), ("skip", Answer::Skip), ("abort", Answer::Abort), ("details", Answer::Details)];
        let words = ANSWERS.map(|(word, _)| word);
        let default = default.filter(|d| *d == Answer::Skip).map(|_| (1, "skips"));
        self.choose(question, &words, default).map(|i| ANSWERS[i].1)
    }

    /// Ask until the operator types one of `words` (or its first letter); an empty line picks
    /// `default` (an index of `words`, and what Enter does: `skips`), if any.
    pub fn choose(&self, question: &str, words: &[&str], default: Option<(usize, &str)>) -> Result<usize, NoAnswer> {
        let choices: Vec<String> = words.iter().map(|w| self.bold(format!("[{}]{}", &w[..1], &w[1..]))).collect();
        let choices = choices.join(" / ");
        let default_note = default.map(|(_, does)| format!(" (Enter {does})")).unwrap_or_default();
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
                && let Some((index, _)) = default
            {
                return Ok(index);
            }
            match parse(&line, words) {
                Some(index) => return Ok(index),
                None => {
                    let letters: Vec<&str> = words.iter().map(|w| &w[..1]).collect();
                    let (last, rest) = letters.split_last().expect("there are choices");
                    self.write_stderr(&format!("  Type {} or {last}, then Enter.\n", rest.join(", ")));
                }
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
        let words = ["yes", "skip", "abort", "details"];
        assert_eq!(parse(" Y ", &words), Some(0));
        assert_eq!(parse("skip", &words), Some(1));
        assert_eq!(parse("ABORT", &words), Some(2));
        assert_eq!(parse("d", &words), Some(3));
        assert_eq!(parse("", &words), None);
        assert_eq!(parse("yolo", &words), None);
        assert_eq!(parse("w", &["pass", "fail", "wait"]), Some(2));
    }
}
