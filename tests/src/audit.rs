//! The gateway's access log as the tests see it: its files, its access records, and the
//! real `sekisho log verify` / `export` run on it; plus a bare gateway process that can be
//! killed with SIGKILL and started again on the same directories (crash tests).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::gateway::{READY_LINE, READY_TIMEOUT, binary};

/// The plain (not yet compressed) log files, in order of their numbers.
pub fn plain_files(log_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(log_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let rest = name.strip_prefix("access-")?.strip_suffix(".jsonl")?;
                    let no = rest.split_once('.')?.1.parse().ok()?;
                    Some((no, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// The file the gateway writes now (the newest one).
pub fn current_file(log_dir: &Path) -> PathBuf {
    plain_files(log_dir)
        .pop()
        .unwrap_or_else(|| log_dir.join("access-none.jsonl"))
}

/// Every complete line of the plain files.
pub fn lines(log_dir: &Path) -> Vec<String> {
    plain_files(log_dir)
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let complete = text.rsplit_once('\n').map_or("", |(c, _)| c).to_owned();
            complete.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

/// The access records (`"kind":"access"`) of the plain files, in order.
pub fn access_lines(log_dir: &Path) -> Vec<String> {
    lines(log_dir)
        .into_iter()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v["kind"] == "access"))
        .collect()
}

/// Runs `sekisho log ARGS…`.
pub fn sekisho_log(args: &[&str]) -> Output {
    Command::new(binary())
        .arg("log")
        .args(args)
        .output()
        .expect("run sekisho log")
}

/// `sekisho log verify DIR`: (exit code, stdout + stderr).
pub fn verify(log_dir: &Path) -> (i32, String) {
    let out = sekisho_log(&["verify", log_dir.to_str().expect("utf-8 path")]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Every verified record, from `sekisho log export DIR --since 0`.
pub fn export(log_dir: &Path) -> Vec<serde_json::Value> {
    let out = sekisho_log(&["export", log_dir.to_str().expect("utf-8 path"), "--since", "0"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("export prints JSON lines"))
        .collect()
}

/// A `sekisho run` process started on an existing policy (and so on its state and log
/// directories), killed on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts the binary and waits for its ready line.
    pub fn start(policy: &Path) -> Process {
        let (child, stderr) = crate::gateway::spawn_run(policy);
        let p = Process { child, stderr };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !p.stderr_text().contains(READY_LINE) {
            assert!(Instant::now() < deadline, "not ready:\n{}", p.stderr_text());
            std::thread::sleep(crate::eventually::POLL_INTERVAL);
        }
        p
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lock").join("\n")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL to a process by id (the harness's own gateway in crash tests).
pub fn kill9(pid: u32) {
    let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
}

/// `sekisho log verify DIR --remote COPY`: (exit code, stdout + stderr).
pub fn verify_remote(log_dir: &Path, copy: &Path) -> (i32, String) {
    let out = sekisho_log(&[
        "verify",
        log_dir.to_str().expect("utf-8 path"),
        "--remote",
        copy.to_str().expect("utf-8 path"),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
