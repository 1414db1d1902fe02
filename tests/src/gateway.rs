//! Starts the real `sekisho` binary on a policy made for the test, waits for
//! `sekisho: ready`, keeps its stderr for assertions, and stops it on drop.
//!
//! A gateway held in a static is never dropped; a watchdog `sh` (stdin is a pipe only this
//! process writes) sends SIGTERM, then SIGKILL after 5 s, when the test process ends.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::pki::{HOSTNAMES, Pki};
use crate::policy::{PolicyFiles, PolicySpec, render};
use crate::{ports, scratch};

/// How long the binary may take to print `sekisho: ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The line the gateway prints on stderr once every listener is bound.
pub const READY_LINE: &str = "sekisho: ready";

/// The `sekisho` binary: `$SEKISHO_BIN`, else `<dir of the test exe>/../sekisho`.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SEKISHO_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "SEKISHO_BIN={} is not a file: build the gateway or fix the variable",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("sekisho"))
        .expect("the test executable has a grandparent directory");
    assert!(
        path.is_file(),
        "the sekisho binary is missing at {}: run `cargo build -p sekisho` (or `cargo test \
         --workspace`) first, or set SEKISHO_BIN",
        path.display()
    );
    assert_fresh(&path);
    path
}

/// `cargo test -p sekisho-tests` alone does not rebuild the binary (it is not a library
/// dependency): refuse to test a binary older than the gateway's or the policy's sources,
/// rather than pass against yesterday's code.
fn assert_fresh(binary: &Path) {
    let built = std::fs::metadata(binary)
        .and_then(|m| m.modified())
        .expect("binary mtime");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let mut stack = vec![repo.join("gateway/src"), repo.join("policy/src")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                assert!(
                    modified <= built,
                    "{} is newer than {}: rebuild with `cargo test --workspace` (or `cargo build -p sekisho`)",
                    path.display(),
                    binary.display()
                );
            }
        }
    }
}

/// Starts `sekisho run --policy POLICY` with stderr collected line by line in the returned
/// buffer (a reader thread fills it until the pipe closes).
pub fn spawn_run(policy: &Path) -> (Child, Arc<Mutex<Vec<String>>>) {
    spawn_run_with(policy, &[])
}

/// [`spawn_run`] with more arguments after `run --policy POLICY` (e.g. `--user 65532`).
pub fn spawn_run_with(policy: &Path, extra: &[String]) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(binary())
        .arg("run")
        .arg("--policy")
        .arg(policy)
        .args(extra)
        .env("RUST_LOG", std::env::var("SEKISHO_TEST_LOG").unwrap_or("info".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the sekisho binary");
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let pipe = child.stderr.take().expect("piped stderr");
    let lines = Arc::clone(&stderr);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            lines.lock().expect("stderr lock").push(line);
        }
    });
    (child, stderr)
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// Where it listens (always on 127.0.0.1).
    pub addr: SocketAddr,
    /// The policy file it runs on (rewrite it and call [`Gateway::reload`]).
    pub policy_path: PathBuf,
    /// The device CRL it watches.
    pub crl_path: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    child: Child,
    /// Arguments after `run --policy POLICY` (kept for [`Gateway::restart`]).
    extra: Vec<String>,
    _watchdog: Option<(Child, ChildStdin)>,
}

impl Gateway {
    /// Writes `spec` as a policy (with `pki`'s files, a fresh CRL listing the initially
    /// revoked serials, fresh state and log directories and a free port) and starts the
    /// binary on it. Panics with the gateway's stderr if it is not ready in time.
    pub fn start(pki: &Pki, spec: &PolicySpec) -> Gateway {
        Gateway::start_inner(pki, spec, None)
    }

    /// [`Gateway::start`] for a gateway started as root that becomes `uid:gid` after
    /// binding (`--user`): its state and log directories are given to that user first.
    pub fn start_as(pki: &Pki, spec: &PolicySpec, uid: u32, gid: u32) -> Gateway {
        Gateway::start_inner(pki, spec, Some((uid, gid)))
    }

    fn start_inner(pki: &Pki, spec: &PolicySpec, user: Option<(u32, u32)>) -> Gateway {
        let dir = scratch::dir("gateway");
        let state_dir = dir.join("state");
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&state_dir).expect("create state_dir");
        std::fs::create_dir_all(&log_dir).expect("create log_dir");
        let mut extra = Vec::new();
        if let Some((uid, gid)) = user {
            for d in [&state_dir, &log_dir] {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).expect("give the directory to the gateway's user");
            }
            extra = vec!["--user".to_string(), format!("{uid}:{gid}")];
        }
        let crl_path = dir.join("device-ca.crl.pem");
        pki.device_ca.write_crl(&crl_path, &pki.initially_revoked());
        let files = PolicyFiles {
            listen: ports::free_addr(),
            hostnames: HOSTNAMES.iter().map(|h| h.to_string()).collect(),
            tls_cert: pki.server.cert_pem_path.clone(),
            tls_key: pki.server.key_pem_path.clone(),
            device_ca: pki.device_ca.cert_pem_path.clone(),
            device_crl: crl_path.clone(),
            state_dir,
            log_dir,
        };
        let policy_path = dir.join("policy.toml");
        std::fs::write(&policy_path, render(spec, &files)).expect("write the policy");
        Gateway::spawn(files.listen, policy_path, crl_path, &extra)
    }

    /// Starts the binary on a policy file the test wrote itself, listening (TLS) on `addr`;
    /// its `log_dir` must be `log` beside the file.
    pub fn run_policy(addr: SocketAddr, policy_path: PathBuf) -> Gateway {
        match Gateway::try_run_policy(addr, policy_path) {
            Ok(g) => g,
            Err(why) => panic!("{why}"),
        }
    }

    /// As [`Gateway::run_policy`], but a gateway that exits or is not ready in time is an
    /// `Err` with its stderr (a caller that chose free ports may choose again when another
    /// test took one of them meanwhile: the stderr then says `cannot listen`).
    pub fn try_run_policy(addr: SocketAddr, policy_path: PathBuf) -> Result<Gateway, String> {
        let crl_path = policy_path.with_file_name("device-ca.crl.pem");
        Gateway::try_spawn(addr, policy_path, crl_path, &[])
    }

    fn spawn(addr: SocketAddr, policy_path: PathBuf, crl_path: PathBuf, extra: &[String]) -> Gateway {
        match Gateway::try_spawn(addr, policy_path, crl_path, extra) {
            Ok(g) => g,
            Err(why) => panic!("{why}"),
        }
    }

    /// Starts `run --policy POLICY EXTRA…` and waits until it is ready.
    fn try_spawn(
        addr: SocketAddr,
        policy_path: PathBuf,
        crl_path: PathBuf,
        extra: &[String],
    ) -> Result<Gateway, String> {
        let (child, stderr) = spawn_run_with(&policy_path, extra);
        let watchdog = watchdog(child.id());
        let mut gateway = Gateway {
            addr,
            policy_path,
            crl_path,
            stderr,
            child,
            extra: extra.to_vec(),
            _watchdog: watchdog,
        };
        gateway.try_wait_ready()?;
        Ok(gateway)
    }

    /// Stops the gateway (SIGTERM) and starts it again on the same policy and arguments,
    /// on the same port; returns when it is ready. Stderr starts afresh.
    pub fn restart(&mut self) {
        self.stop();
        let (child, stderr) = spawn_run_with(&self.policy_path, &self.extra);
        self._watchdog = watchdog(child.id());
        self.child = child;
        self.stderr = stderr;
        if let Err(why) = self.try_wait_ready() {
            panic!("{why}");
        }
    }

    fn try_wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.stderr_lines().iter().any(|l| l.contains(READY_LINE)) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "sekisho exited ({status}) before `{READY_LINE}`; policy:\n{}\nstderr:\n{}",
                    std::fs::read_to_string(&self.policy_path).unwrap_or_default(),
                    self.stderr_text()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "sekisho did not print `{READY_LINE}` within {READY_TIMEOUT:?}; stderr:\n{}",
                    self.stderr_text()
                ));
            }
            std::thread::sleep(crate::eventually::POLL_INTERVAL);
        }
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Stderr so far, one string (for failure messages).
    pub fn stderr_text(&self) -> String {
        self.stderr_lines().join("\n")
    }

    /// The audit log directory (`log_dir`).
    pub fn log_dir(&self) -> PathBuf {
        self.policy_path
            .parent()
            .expect("the policy lives in the gateway's scratch dir")
            .join("log")
    }

    /// The audit log file the gateway is writing now (the newest `access-DATE.N.jsonl`).
    pub fn access_log(&self) -> PathBuf {
        crate::audit::current_file(&self.log_dir())
    }

    /// The process id (for SIGKILL in crash tests).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit by itself; returns
    /// its exit status, or `None` if it was still running (it is then killed).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(crate::eventually::POLL_INTERVAL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// The process's resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Sends SIGHUP (policy reload).
    pub fn reload(&self) {
        signal(self.child.id(), "HUP");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL if it has not ended within 5 s.
    pub fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(crate::eventually::POLL_INTERVAL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A shell that waits for EOF on its stdin (this process ending), then stops `pid`.
fn watchdog(pid: u32) -> Option<(Child, ChildStdin)> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(
            r#"cat >/dev/null; kill -TERM "$1" 2>/dev/null || exit 0
               n=0; while kill -0 "$1" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
               kill -KILL "$1" 2>/dev/null; exit 0"#,
        )
        .arg("sh")
        .arg(pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdin = child.stdin.take()?;
    Some((child, stdin))
}
