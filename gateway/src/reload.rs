//! Policy reload beyond SIGHUP: a watcher that notices when the policy file changed (editors
//! and `git pull` replace it by rename) and runs the same candidate → validated → active
//! reload as SIGHUP; and the git commit a policy file was loaded from.
//!
//! The watcher polls rather than using inotify: one `stat` per interval (identity: device,
//! inode, size, mtime, ctime), and only when the identity moved, one read and a SHA-256 of
//! the content. A rename, an in-place write and a `git checkout` all change the identity; a
//! content hash equal to the last one seen (a `touch`, a rewrite with the same bytes, the same
//! bad file again) is not reloaded or reported twice. No new dependency, no platform code.
//!
//! It must never replace a good policy with a bad one (that is `Gateway::reload`'s guarantee)
//! and never stop watching because of an error: every refusal is logged and the loop goes on.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

use crate::audit::{self, Event};
use crate::gateway::{Candidate, Gateway};

/// The environment variable a deploy hook may set to the commit being deployed; used only
/// when no `.git` is found beside the policy file.
pub const COMMIT_ENV: &str = "SEKISHO_POLICY_COMMIT";

/// What identifies the file's current version without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn identity(path: &Path) -> Option<Identity> {
    let m = std::fs::metadata(path).ok()?;
    Some(Identity {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// Watches the policy file until `stop` turns true, reloading whenever its content changes.
/// The interval is the active policy's `[limits] policy_poll_interval` (default 1 s).
pub async fn watch_policy_file(gw: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let path = gw.policy_path.clone();
    let mut seen_identity = identity(&path);
    // The content last acted upon, good or bad: starts as the active policy's.
    let mut seen_sha256 = gw.active().version.sha256.clone();
    loop {
        let interval = gw.active().policy.limits.policy_poll_interval;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let now = identity(&path);
        if now == seen_identity {
            continue;
        }
        seen_identity = now;
        if now.is_none() {
            // Between unlink and rename, or deleted: keep serving; the next poll looks again.
            tracing::warn!(policy_file = %path.display(), "policy file is missing; the active policy keeps serving");
            continue;
        }
        let gw2 = gw.clone();
        let seen = seen_sha256.clone();
        let outcome = tokio::task::spawn_blocking(move || reload_if_changed(&gw2, &seen)).await;
        match outcome {
            Ok(Some(sha256)) => seen_sha256 = sha256,
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "policy reload task failed; the active policy keeps serving"),
        }
    }
}

/// Reads the file once; when its hash differs from `seen`, validates and activates it.
/// Returns the hash acted upon (accepted, refused or already active), or `None` when the file
/// could not be read.
fn reload_if_changed(gw: &Gateway, seen: &str) -> Option<String> {
    let candidate = match Candidate::read(&gw.policy_path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("policy reload refused; the previous policy keeps serving:\n{e}");
            return None;
        }
    };
    let sha256 = candidate.version.sha256.clone();
    if sha256 == seen || sha256 == gw.active().version.sha256 {
        return Some(sha256);
    }
    let commit = candidate.version.git_commit.clone();
    match gw.reload_candidate(candidate) {
        Ok(active) => gw.audit.record_detached(&Event::PolicyLoaded {
            policy: &active.policy.id,
            generation: active.generation,
            trigger: "file_change",
        }),
        Err(e) => {
            tracing::error!(
                policy = %sha256,
                commit = commit.as_deref().unwrap_or("unknown"),
                "policy reload refused; the previous policy keeps serving:\n{e}"
            );
            gw.audit.record_detached(&Event::PolicyRejected {
                trigger: "file_change",
                error: audit::clip(&e.to_string()),
            });
            notify_refused(gw, "file_change", &e.to_string());
        }
    }
    Some(sha256)
}

/// Tells the admin (mail, webhook) that a policy was refused and the old one keeps serving.
pub fn notify_refused(gw: &Gateway, trigger: &'static str, error: &str) {
    if let Some(auth) = gw.auth.get() {
        auth.notify(
            &gw.active().policy,
            crate::auth::notify::Notice::PolicyRejected {
                trigger,
                error: error.to_owned(),
            },
        );
    }
}

/// Says which users the new policy removed or took groups from. Their sessions end at once
/// without further work: every request re-checks its session's user and groups against the
/// active policy (see `auth::session`), so this only makes the change visible in the log.
pub fn end_sessions_of_removed_identities(old: &sekisho_policy::Policy, new: &sekisho_policy::Policy) {
    let users = sekisho_policy::identities_losing_access(old, new);
    if !users.is_empty() {
        tracing::info!(users = %users.join(","), "users removed or moved out of groups; their sessions end");
    }
}

/// The git commit of the checkout holding `policy_file`: HEAD of the nearest `.git` in the
/// file's directory or a parent, read by hand (HEAD, then the loose ref or `packed-refs`);
/// else `$SEKISHO_POLICY_COMMIT`; else `None`. No git binary and no libgit2.
///
/// It names HEAD, not the file: an uncommitted edit loads under HEAD's commit. The sha256 is
/// the exact identity; the commit is where to look in history.
pub fn git_commit(policy_file: &Path) -> Option<String> {
    if let Some(git_dir) = find_git_dir(policy_file) {
        return head_commit(&git_dir);
    }
    std::env::var(COMMIT_ENV)
        .ok()
        .filter(|c| is_hex_id(c.trim()))
        .map(|c| c.trim().to_string())
}

/// The directories [`git_commit`] reads for this policy file: its git directory and, for a
/// linked worktree, the common one. The hardened gateway may read only these (and the
/// policy's own directory), so they are named at start (see `harden`).
pub fn git_dirs(policy_file: &Path) -> Vec<PathBuf> {
    let Some(git_dir) = find_git_dir(policy_file) else {
        return Vec::new();
    };
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| git_dir.join(c.trim()));
    let mut dirs = vec![git_dir];
    dirs.extend(common);
    dirs
}

/// The nearest `.git` in the file's directory or a parent.
fn find_git_dir(policy_file: &Path) -> Option<PathBuf> {
    let start = std::fs::canonicalize(policy_file)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .or_else(|| policy_file.parent().map(Path::to_path_buf));
    let mut dir = start;
    while let Some(d) = dir {
        if let Some(git_dir) = git_dir_of(&d) {
            return Some(git_dir);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    None
}

/// `DIR/.git` as a directory, or the directory a `.git` file points to (`gitdir: …`, as in
/// worktrees and submodules).
fn git_dir_of(dir: &Path) -> Option<PathBuf> {
    let dot_git = dir.join(".git");
    let meta = std::fs::metadata(&dot_git).ok()?;
    if meta.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    let target = Path::new(target);
    Some(if target.is_absolute() {
        target.to_path_buf()
    } else {
        dir.join(target)
    })
}

/// HEAD of a git directory as a commit id, following one symbolic ref.
fn head_commit(git_dir: &Path) -> Option<String> {
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:").map(str::trim) else {
        return is_hex_id(head).then(|| head.to_string());
    };
    if !reference.starts_with("refs/") || reference.split('/').any(|s| s == ".." || s.is_empty()) {
        return None;
    }
    // A linked worktree keeps HEAD in its own directory, refs in the common one.
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.to_path_buf());
    for base in [git_dir, common.as_path()] {
        if let Ok(id) = std::fs::read_to_string(base.join(reference)) {
            let id = id.trim();
            if is_hex_id(id) {
                return Some(id.to_string());
            }
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (id, name) = line.split_once(' ')?;
        (name.trim() == reference && is_hex_id(id)).then(|| id.to_string())
    })
}

/// A SHA-1 (40) or SHA-256 (64) object id in lower-case hex.
fn is_hex_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";
    const B: &str = "89abcdef0123456789abcdef0123456789abcdef";

    fn repo(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sekisho-git-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join(".git/refs/heads")).unwrap();
        std::fs::write(d.join("policy.toml"), "version = 1\n").unwrap();
        d
    }

    #[test]
    fn head_through_a_loose_ref() {
        let d = repo("loose");
        std::fs::write(d.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(d.join(".git/refs/heads/main"), format!("{A}\n")).unwrap();
        assert_eq!(git_commit(&d.join("policy.toml")).as_deref(), Some(A));
    }

    #[test]
    fn head_through_packed_refs_and_from_a_subdirectory() {
        let d = repo("packed");
        std::fs::create_dir_all(d.join("policies")).unwrap();
        std::fs::write(d.join("policies/p.toml"), "").unwrap();
        std::fs::write(d.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(
            d.join(".git/packed-refs"),
            format!("# pack-refs with: peeled fully-peeled sorted\n{B} refs/heads/dev\n{A} refs/heads/main\n"),
        )
        .unwrap();
        assert_eq!(git_commit(&d.join("policies/p.toml")).as_deref(), Some(A));
    }

    #[test]
    fn detached_head_and_a_gitdir_file() {
        let d = repo("detached");
        std::fs::write(d.join(".git/HEAD"), format!("{B}\n")).unwrap();
        assert_eq!(git_commit(&d.join("policy.toml")).as_deref(), Some(B));
        let w = std::env::temp_dir().join(format!("sekisho-git-worktree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&w);
        std::fs::create_dir_all(&w).unwrap();
        std::fs::write(w.join(".git"), format!("gitdir: {}\n", d.join(".git").display())).unwrap();
        std::fs::write(w.join("policy.toml"), "").unwrap();
        assert_eq!(git_commit(&w.join("policy.toml")).as_deref(), Some(B));
    }

    #[test]
    fn a_ref_escaping_the_git_dir_is_ignored() {
        let d = repo("escape");
        std::fs::write(d.join(".git/HEAD"), "ref: refs/../../policy.toml\n").unwrap();
        assert_eq!(git_commit(&d.join("policy.toml")), None);
    }
}
