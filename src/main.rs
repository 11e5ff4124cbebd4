//! The `rollout` binary: everything lives in the library.
//! This only passes the arguments on and exits with the code it gets back.

fn main() {
    std::process::exit(rollout::run(std::env::args_os()));
}
