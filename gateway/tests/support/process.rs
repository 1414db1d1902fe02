//! Running the built `sekisho` binary from a test, shared by the command-line test files.

use std::process::{Command, Output};

/// Runs `sekisho ARGS…` to completion.
pub fn sekisho(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sekisho"))
        .args(args)
        .output()
        .expect("run sekisho")
}

/// Standard output followed by standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
