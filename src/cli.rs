//! Command-line types, parsed by clap; nothing here does any work.
//! `commands` turns these into actions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::runbook::Severity;

/// Walk a rollback runbook one confirmed step at a time: flag toggles, git reverts, CI/CD.
#[derive(Debug, Parser)]
#[command(name = "rollout", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Use this config file instead of the nearest rollout.yaml
    #[arg(short = 'C', long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// JSON on stdout, one object per line: a run's events, or the rows of runs, list and validate
    #[arg(long, global = true)]
    pub json: bool,

    /// When to color the output
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    /// Print only prompts, warnings, errors and the final result
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print more detail, such as a pipeline's output as it runs
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Environment variables rollout reads, for `--help`, the man page and the README.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("ROLLOUT_STATE_DIR", "where journals and locks live (default $XDG_STATE_HOME/rollout, ~/.local/state/rollout)"),
    ("NO_COLOR", "no colour when set and not empty (--color wins)"),
    ("USER, LOGNAME", "the user a lock and a journal name"),
    ("GIT_AUTHOR_NAME/EMAIL, GIT_COMMITTER_NAME/EMAIL", "the identity of revert commits"),
    ("SSH_AUTH_SOCK", "the ssh-agent offered for git over ssh"),
    ("<token_env>, <webhook_env>, ...", "secrets named in rollout.yaml; never printed or journaled"),
    ("ROLLOUT_REHEARSAL_DEPLOY_SECONDS", "how long rehearse's deploy script takes (default 1)"),
];

/// Files rollout reads and writes.
pub const FILES: &[(&str, &str)] = &[
    ("rollout.yaml", "the config: -C FILE, else ./rollout.yaml or the nearest one in a parent folder"),
    ("runbooks/<name>.yaml", "the runbooks, in the folder the config names"),
    ("<state dir>/runs/<run id>.jsonl", "one journal per run, every event fsynced before the next step"),
    ("<state dir>/locks/", "one lock per runbook, naming its holder"),
];

/// The kinds of runbook step and what each does.
pub fn step_kinds() -> Vec<(&'static str, &'static str)> {
    crate::runbook::StepKind::ALL.iter().map(|kind| (kind.as_str(), kind.summary())).collect()
}

/// The reference that ends `--help`: exit codes, step kinds, environment, files.
fn reference() -> String {
    let mut text = String::from("Exit codes:\n");
    for code in crate::error::ExitCode::ALL {
        text.push_str(&format!("  {:<4} {}\n", code.code(), code.meaning()));
    }
    text.push_str("\nStep kinds:\n");
    for (name, summary) in step_kinds() {
        text.push_str(&format!("  {name}\n      {summary}\n"));
    }
    for (title, rows) in [("Environment", ENVIRONMENT), ("Files", FILES)] {
        text.push_str(&format!("\n{title}:\n"));
        for (name, meaning) in rows {
            text.push_str(&format!("  {name}\n      {meaning}\n"));
        }
    }
    text
}

/// The command line, with the reference after the long help.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().after_long_help(reference())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Walk the runbook for an incident's severity against the configured services
    Incident(IncidentArgs),
    /// Walk any runbook in the runbooks folder by name (e.g. staged-rollout)
    Run(RunArgs),
    /// Walk a severity's runbook against a throwaway sandbox built in a temp dir
    Rehearse(RehearseArgs),
    /// Check runbooks and config without running anything
    Validate(ValidateArgs),
    /// Show the runbooks, their inputs and steps
    List,
    /// Show past runs from the journal, or one run's story
    Runs(RunsArgs),
    /// Take an interrupted, failed or aborted run up again where it stopped
    Resume(ResumeArgs),
    /// Put back what a run changed, its steps in reverse
    Undo(UndoArgs),
    /// A postmortem-ready record of one or more runs of an incident
    Timeline(TimelineArgs),
    /// Remove a runbook's lock that a run left behind (asks to type the runbook's name)
    Unlock(UnlockArgs),
    /// Approve the step a run waits on, after seeing its plan and digest (shared state)
    Approve(ApproveArgs),
    /// Reject the step a run waits on, with a reason: it does not act (shared state)
    Reject(RejectArgs),
    /// Follow a run live from another machine, or the team's runs as they start and end (shared state)
    Watch(WatchArgs),
    /// The shared state backend: create or upgrade its schema, send it what it lacks
    #[command(subcommand)]
    State(StateCommand),
    /// Print shell completions
    Completions(CompletionsArgs),
    /// Print the man page (roff)
    Man,
}

/// Options shared by every command that walks a runbook.
#[derive(Debug, Args)]
pub struct WalkArgs {
    /// Set a runbook input (repeatable)
    #[arg(long = "var", value_name = "K=V")]
    pub vars: Vec<String>,

    /// Run every read-only check and print the plan; change nothing, ask nothing
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,

    /// Answer yes to every prompt (for scripts)
    #[arg(long)]
    pub yes: bool,

    /// Start at this step id; earlier steps are recorded as skipped
    #[arg(long, value_name = "STEP")]
    pub from: Option<String>,

    /// Let steps that need approval act without it, for this reason (journaled, shown to all)
    #[arg(long, value_name = "REASON")]
    pub break_glass: Option<String>,
}

#[derive(Debug, Args)]
pub struct IncidentArgs {
    /// The incident's severity: picks the runbook with this `severity`
    #[arg(long, value_enum)]
    pub severity: Severity,

    #[command(flatten)]
    pub walk: WalkArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Runbook name: the file name in the runbooks folder without .yaml
    pub name: String,

    #[command(flatten)]
    pub walk: WalkArgs,
}

#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// Which severity's runbook to rehearse
    #[arg(long, value_enum)]
    pub severity: Severity,

    /// Set a runbook input (repeatable)
    #[arg(long = "var", value_name = "K=V")]
    pub vars: Vec<String>,

    /// Answer yes to every prompt
    #[arg(long)]
    pub yes: bool,

    /// Keep the sandbox directory and print where it is
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Runbook or config files; default: the config and every runbook it points to
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print completions for
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// One run's story: every step with its time, who confirmed it, before -> after, outputs
    pub run: Option<String>,

    /// Show dry runs too
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to take up again (`rollout runs` lists them)
    pub run: String,

    /// Answer yes to every prompt (for scripts); drift found by the re-check still stops it
    #[arg(long)]
    pub yes: bool,

    /// Go on although the runbook or config changed since the run started, or a done step
    /// no longer holds
    #[arg(long)]
    pub force: bool,

    /// Give again an input whose value held a secret, which the journal does not keep
    #[arg(long = "var", value_name = "K=V")]
    pub vars: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The run whose changes to put back
    pub run: String,

    /// Answer yes to every prompt (for scripts)
    #[arg(long)]
    pub yes: bool,

    /// Put a flag back even if someone changed it since the run left it
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimelineFormat {
    Markdown,
    Json,
}

#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// The runs of the incident, in any order (the critical run, then its undo, ...)
    #[arg(required = true)]
    pub runs: Vec<String>,

    /// Markdown for the postmortem document, or JSON
    #[arg(long, value_enum, default_value_t = TimelineFormat::Markdown)]
    pub format: TimelineFormat,

    /// Write it to FILE instead of stdout, with an SVG chart of each gate beside it, linked
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The run to follow until it ends (its id, or the start of one); without it, every run
    pub run: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The run that waits (its id, or the start of one)
    pub run: String,

    /// Approve without asking (the plan is still shown)
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The run that waits (its id, or the start of one)
    pub run: String,

    /// Why: the run's operator sees it, and the journal keeps it
    #[arg(long, required = true)]
    pub reason: String,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Create rollout's schema on the shared backend, or bring it up to this version (idempotent)
    Migrate,
    /// Send the shared journal the events this machine's journals have and it lacks, and copy
    /// back what it has and they lack
    Sync,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The runbook whose lock to remove
    pub runbook: String,

    /// Do not ask to type the runbook's name (for scripts)
    #[arg(long)]
    pub yes: bool,
}
