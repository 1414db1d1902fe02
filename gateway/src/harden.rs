//! Process hardening for `sekisho run`, applied once, after the listeners are bound and
//! before any thread exists: the process gives up what it will never need again.
//!
//! In this order (each step needs what the previous one still had):
//! 1. the state and log directories exist (created for the run-as user when started as root);
//! 2. rlimits: no core files, open files enough for the connection cap ([`Limits::open_files`]);
//! 3. every capability leaves the bounding set;
//! 4. as root with `--user UID:GID`: supplementary groups cleared, then gid and uid set
//!    (real, effective and saved); the kernel empties the permitted set on the uid change;
//! 5. effective, permitted, inheritable and ambient capabilities cleared (also when root
//!    stays uid 0 without `--user`), then checked to be empty;
//! 6. not dumpable (no core, no ptrace by the same uid, `/proc/PID/*` owned by root);
//! 7. `no_new_privs`;
//! 8. Landlock: reads only beneath the policy's directory, its git directory, the
//!    directories of the files the policy names and a few system files (CA roots, resolver);
//!    reads and writes only beneath `state_dir` and `log_dir`; nothing may be executed.
//!
//! Capabilities, `no_new_privs`, set*id through raw syscalls and Landlock all act on the
//! calling *thread* (new threads inherit them), so [`apply`] refuses to run when the
//! process already has a second thread: the tokio runtime, the audit writer and sled's
//! threads are all started after it. This module must not start threads or the runtime.

use sekisho_policy::{Limits, Policy};
use std::path::{Path, PathBuf};

/// What `sekisho run` was told about hardening on its command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The numeric user and group to become when started as root.
    pub user: Option<RunAs>,
    /// Start even where the kernel has no Landlock (recorded as a warning at every start).
    pub danger_allow_no_landlock: bool,
}

/// `--user UID[:GID]`: numeric only (a scratch image and an initramfs have no user
/// database, and a name could resolve differently on the host that built the unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl std::str::FromStr for RunAs {
    type Err = String;

    fn from_str(s: &str) -> Result<RunAs, String> {
        let number = |part: &str| {
            part.parse::<u32>()
                .map_err(|_| format!("`{s}`: expected numeric UID or UID:GID (for example 65532:65532)"))
        };
        let (uid, gid) = match s.split_once(':') {
            Some((u, g)) => (number(u)?, number(g)?),
            None => {
                let u = number(s)?;
                (u, u)
            }
        };
        if uid == 0 || gid == 0 {
            return Err(format!(
                "`{s}`: --user names the unprivileged user to become; 0 is root"
            ));
        }
        Ok(RunAs { uid, gid })
    }
}

/// What hardening achieved, for the start-up log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub uid: u32,
    pub gid: u32,
    pub open_files: u64,
    pub landlock: LandlockState,
}

/// How much of the Landlock ruleset the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockState {
    /// Every right Sekisho asks for is enforced.
    Full,
    /// The kernel's Landlock is older than the rights asked for; reads and writes outside
    /// the directories are still refused (Landlock ABI 1 covers both).
    Partial,
    /// No Landlock (started with `--danger-allow-no-landlock`).
    None,
}

/// A hardening step failed; `sekisho run` refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("hardening the process: {step}: {detail}")]
pub struct HardenError {
    step: &'static str,
    detail: String,
}

fn fail(step: &'static str) -> impl Fn(std::io::Error) -> HardenError {
    move |e| HardenError {
        step,
        detail: e.to_string(),
    }
}

fn fail_errno(step: &'static str) -> impl Fn(rustix::io::Errno) -> HardenError {
    move |e| HardenError {
        step,
        detail: std::io::Error::from(e).to_string(),
    }
}

/// The directories the gateway may use after [`apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paths {
    /// Read only, with everything beneath.
    pub read_dirs: Vec<PathBuf>,
    /// Read only, single files (system files that may be absent).
    pub read_files: Vec<PathBuf>,
    /// Read and write, with everything beneath.
    pub write_dirs: Vec<PathBuf>,
}

/// System files and directories a gateway reads at run time: CA roots for SMTP and webhook
/// TLS, and what the resolver reads to find the mail server. Absent ones are skipped.
const SYSTEM_READ_DIRS: &[&str] = &[
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
];
const SYSTEM_READ_FILES: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/localtime",
];

/// The Landlock paths for a policy. Files are covered through their directory, not their
/// inode: certificates and policies are replaced by rename (certbot, editors, `git pull`),
/// and a rule on the old inode would not cover the new file.
pub fn paths_for(policy_path: &Path, policy: &Policy) -> Paths {
    let mut p = Paths::default();
    let mut read_dir_of = |file: &str| {
        let parent = Path::new(file).parent().filter(|d| !d.as_os_str().is_empty());
        p.read_dirs
            .push(parent.map_or_else(|| PathBuf::from("."), Path::to_path_buf));
    };
    read_dir_of(&policy_path.to_string_lossy());
    let s = &policy.server;
    match &s.certificate {
        sekisho_policy::ServerCertificate::Files { cert, key } => {
            read_dir_of(cert);
            read_dir_of(key);
        }
        // ACME keeps its account and certificates in state_dir/acme (read-write below).
        sekisho_policy::ServerCertificate::Acme(a) => {
            if let Some(ca) = &a.directory_ca {
                read_dir_of(ca);
            }
        }
    }
    if let Some(ca) = &s.device_ca {
        read_dir_of(ca);
    }
    if let Some(crl) = s.device_crl_path() {
        read_dir_of(&crl);
    }
    if let Some(file) = policy.notify.smtp.as_ref().and_then(|m| m.password_file.as_ref()) {
        read_dir_of(file);
    }
    if let Some(ca) = policy.log.remote.as_ref().and_then(|r| r.ca_file.as_ref()) {
        read_dir_of(ca);
    }
    p.read_dirs.extend(crate::reload::git_dirs(policy_path));
    for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
        if let Some(v) = std::env::var_os(var) {
            let v = PathBuf::from(v);
            if v.is_dir() {
                p.read_dirs.push(v);
            } else {
                p.read_files.push(v);
            }
        }
    }
    p.read_dirs.extend(SYSTEM_READ_DIRS.iter().map(PathBuf::from));
    p.read_files.extend(SYSTEM_READ_FILES.iter().map(PathBuf::from));
    p.write_dirs.push(PathBuf::from(&s.state_dir));
    p.write_dirs.push(PathBuf::from(&s.log_dir));
    p.read_dirs.sort();
    p.read_dirs.dedup();
    p
}

/// Hardens the process (see the module documentation for the steps and their order).
pub fn apply(policy_path: &Path, policy: &Policy, opts: &Options) -> Result<Report, HardenError> {
    refuse_if_threaded()?;
    let euid = rustix::process::geteuid().as_raw();
    let run_as = match (euid, opts.user) {
        (0, Some(u)) => Some(u),
        (0, None) => {
            tracing::warn!(
                "started as root without --user: the gateway stays uid 0 (with no capabilities, \
                 no_new_privs and Landlock); pass --user UID:GID to run as an unprivileged user"
            );
            None
        }
        (me, Some(u)) if me != u.uid => {
            return Err(HardenError {
                step: "--user",
                detail: format!("started as uid {me}, which cannot become uid {}", u.uid),
            });
        }
        _ => None,
    };
    let paths = paths_for(policy_path, policy);
    for dir in &paths.write_dirs {
        prepare_dir(dir, run_as)?;
    }
    let open_files = set_rlimits(&policy.limits)?;
    drop_bounding_set()?;
    if let Some(u) = run_as {
        use rustix::process::{Gid, Uid};
        let gid = Gid::from_raw(u.gid);
        let uid = Uid::from_raw(u.uid);
        rustix::thread::set_thread_groups(&[]).map_err(fail_errno("clearing supplementary groups"))?;
        rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(fail_errno("setting the gid"))?;
        rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(fail_errno("setting the uid"))?;
    }
    clear_capabilities()?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(fail_errno("PR_SET_DUMPABLE 0"))?;
    rustix::thread::set_no_new_privs(true).map_err(fail_errno("PR_SET_NO_NEW_PRIVS"))?;
    let landlock = restrict_filesystem(&paths, opts.danger_allow_no_landlock)?;
    let report = Report {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        open_files,
        landlock,
    };
    tracing::info!(
        uid = report.uid,
        gid = report.gid,
        open_files = report.open_files,
        landlock = ?report.landlock,
        read = ?paths.read_dirs,
        write = ?paths.write_dirs,
        "process hardened: no capabilities, no_new_privs, not dumpable, no core files"
    );
    Ok(report)
}

/// Every hardening call below acts on the calling thread only: with a second thread
/// alive, that thread would keep the privileges. Where `/proc` is absent (an init before
/// it mounts it) the order of `run` is the guarantee.
fn refuse_if_threaded() -> Result<(), HardenError> {
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        let n = tasks.count();
        if n != 1 {
            return Err(HardenError {
                step: "threads",
                detail: format!("{n} threads already run; hardening must come before any thread starts"),
            });
        }
    }
    Ok(())
}

/// Creates a missing state or log directory (0700, owned by the run-as user when root
/// switches to one). An existing directory is left as the administrator made it, but one
/// the run-as user does not own is refused now, with the remedy, rather than failing later.
fn prepare_dir(dir: &Path, run_as: Option<RunAs>) -> Result<(), HardenError> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    if let Ok(meta) = std::fs::metadata(dir)
        && meta.is_dir()
    {
        return match run_as {
            Some(u) if meta.uid() != u.uid => Err(HardenError {
                step: "--user",
                detail: format!(
                    "{} belongs to uid {}, not {}: `chown -R {}:{} {}` first",
                    dir.display(),
                    meta.uid(),
                    u.uid,
                    u.uid,
                    u.gid,
                    dir.display()
                ),
            }),
            _ => Ok(()),
        };
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail("creating the state and log directories"))?;
    if let Some(u) = run_as {
        std::os::unix::fs::chown(dir, Some(u.uid), Some(u.gid))
            .map_err(fail("giving the state and log directories to --user"))?;
    }
    Ok(())
}

/// No core files (they would hold keys and session secrets); enough descriptors for the
/// connection cap. Returns the open-file limit now in force.
fn set_rlimits(limits: &Limits) -> Result<u64, HardenError> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(fail_errno("RLIMIT_CORE"))?;
    let want = limits.open_files();
    let now = getrlimit(Resource::Nofile);
    let hard = now.maximum.unwrap_or(u64::MAX);
    // Root may raise the hard limit; anyone may raise the soft one up to the hard one.
    let target = if hard >= want {
        Rlimit {
            current: Some(want.max(now.current.unwrap_or(0))),
            maximum: now.maximum,
        }
    } else {
        Rlimit {
            current: Some(want),
            maximum: Some(want),
        }
    };
    if setrlimit(Resource::Nofile, target).is_err() {
        let capped = Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        };
        setrlimit(Resource::Nofile, capped).map_err(fail_errno("RLIMIT_NOFILE"))?;
        tracing::warn!(
            wanted = want,
            hard_limit = hard,
            "the open-file limit is below what max_connections needs; raise it (LimitNOFILE=, --ulimit nofile=) or lower [limits] max_connections"
        );
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

/// Removes every capability from the bounding set, so nothing executed later could regain
/// one. Needs CAP_SETPCAP: a process started without it (a non-root container user) has an
/// empty permitted set already and `no_new_privs` keeps it so.
fn drop_bounding_set() -> Result<(), HardenError> {
    use rustix::thread::{CapabilitySet, capabilities, remove_capability_from_bounding_set};
    let can = capabilities(None)
        .map_err(fail_errno("reading capabilities"))?
        .effective
        .contains(CapabilitySet::SETPCAP);
    if !can {
        return Ok(());
    }
    for (_, cap) in CapabilitySet::all().iter_names() {
        match remove_capability_from_bounding_set(cap) {
            // EINVAL: a capability this kernel does not know.
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(fail_errno("dropping the capability bounding set")(e)),
        }
    }
    Ok(())
}

/// Clears the effective, permitted, inheritable and ambient sets and checks they are empty.
fn clear_capabilities() -> Result<(), HardenError> {
    use rustix::thread::{CapabilitySet, CapabilitySets, capabilities, clear_ambient_capability_set, set_capabilities};
    match clear_ambient_capability_set() {
        Ok(()) | Err(rustix::io::Errno::INVAL) => {}
        Err(e) => return Err(fail_errno("clearing ambient capabilities")(e)),
    }
    let empty = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    set_capabilities(None, empty).map_err(fail_errno("clearing capabilities"))?;
    let now = capabilities(None).map_err(fail_errno("reading capabilities"))?;
    if now != empty {
        return Err(HardenError {
            step: "clearing capabilities",
            detail: format!("still held: {now:?}"),
        });
    }
    Ok(())
}

/// Restricts the filesystem with Landlock. A kernel without Landlock is refused unless the
/// operator said `--danger-allow-no-landlock`.
fn restrict_filesystem(paths: &Paths, allow_none: bool) -> Result<LandlockState, HardenError> {
    use landlock::{
        ABI, Access as _, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr as _, RulesetCreatedAttr as _,
        RulesetStatus,
    };
    let abi = ABI::V5;
    let ll = |e: landlock::RulesetError| HardenError {
        step: "Landlock",
        detail: e.to_string(),
    };
    let read_dir = AccessFs::from_read(abi);
    let read_file = AccessFs::from_read(abi) & AccessFs::from_file(abi);
    let all = AccessFs::from_all(abi);
    let mut ruleset = Ruleset::default()
        .handle_access(all)
        .map_err(ll)?
        .create()
        .map_err(ll)?;
    let rules = paths
        .read_dirs
        .iter()
        .map(|p| (p, read_dir, true))
        .chain(paths.read_files.iter().map(|p| (p, read_file, false)))
        .chain(paths.write_dirs.iter().map(|p| (p, all, true)));
    for (path, access, required) in rules {
        let fd = match PathFd::new(path) {
            Ok(fd) => fd,
            // Optional system files and directories that this host does not have.
            Err(_) if !required || SYSTEM_READ_DIRS.iter().any(|s| Path::new(s) == path) => continue,
            Err(e) => {
                return Err(HardenError {
                    step: "Landlock",
                    detail: format!("{}: {e}", path.display()),
                });
            }
        };
        let access = if path.is_dir() {
            access
        } else {
            access & AccessFs::from_file(abi)
        };
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access)).map_err(ll)?;
    }
    let status = ruleset.restrict_self().map_err(ll)?;
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(LandlockState::Full),
        RulesetStatus::PartiallyEnforced => {
            tracing::warn!(
                "Landlock is only partly supported by this kernel; reads and writes outside the allowed directories are still refused"
            );
            Ok(LandlockState::Partial)
        }
        RulesetStatus::NotEnforced if allow_none => {
            tracing::error!(
                "LANDLOCK IS NOT AVAILABLE in this kernel: the gateway can read and write anything its user may \
                 (started with --danger-allow-no-landlock)"
            );
            Ok(LandlockState::None)
        }
        RulesetStatus::NotEnforced => Err(HardenError {
            step: "Landlock",
            detail: "this kernel does not enforce Landlock (needs Linux 5.13+ with landlock in lsm=); refusing to \
                     start without it. --danger-allow-no-landlock starts anyway, with a warning at every start"
                .into(),
        }),
    }
}

/// As PID 1 (a scratch container, the VM), orphans are re-parented to the gateway: reap
/// them so they do not stay zombies. Runs until the process ends.
pub async fn reap_children() {
    use rustix::process::{WaitOptions, wait};
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut chld) = signal(SignalKind::child()) else {
        tracing::error!("cannot watch SIGCHLD; orphaned processes will not be reaped");
        return;
    };
    loop {
        // Reap every exited child on each SIGCHLD (signals coalesce), and once first:
        // children may have exited before the handler existed. `wait` is wait4(-1), any
        // child; rustix's `waitpid(None, …)` is wait4(0), only the caller's process group,
        // which an orphan need not be in (the container test caught that).
        while let Ok(Some((pid, status))) = wait(WaitOptions::NOHANG) {
            tracing::debug!(pid = pid.as_raw_nonzero().get(), ?status, "reaped a child");
        }
        if chld.recv().await.is_none() {
            return;
        }
    }
}

/// Whether this process is PID 1 of its namespace.
pub fn is_init() -> bool {
    rustix::process::getpid().is_init()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn run_as_is_numeric_and_never_root() {
        assert_eq!("65532".parse::<RunAs>(), Ok(RunAs { uid: 65532, gid: 65532 }));
        assert_eq!("1000:2000".parse::<RunAs>(), Ok(RunAs { uid: 1000, gid: 2000 }));
        assert!("sekisho".parse::<RunAs>().is_err());
        assert!("0:0".parse::<RunAs>().is_err());
        assert!("1000:0".parse::<RunAs>().is_err());
        assert!("1000:".parse::<RunAs>().is_err());
    }
}
