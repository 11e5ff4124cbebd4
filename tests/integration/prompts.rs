//! Prompts, exit codes and interruption of a walk.
