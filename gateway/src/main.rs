//! The `sekisho` binary: parse the command line, run it, turn the outcome into an exit code.
//! Everything else lives in the library so that tests can drive it without a process.

use std::process::ExitCode;

fn main() -> ExitCode {
    sekisho::cli::main()
}
