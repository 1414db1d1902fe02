//! Temporary directories for certificates, policies, state and logs.
//!
//! Every directory lives under one per-process root in the system temp dir. The root is
//! removed when the test process ends, even when fixtures shared through statics are never
//! dropped: a tiny `sh` watchdog waits for EOF on a pipe whose only writer is this process.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Root {
    path: PathBuf,
    // Held for the life of the process: when the process ends, the pipe closes and the
    // watchdog removes `path`.
    _watchdog: Child,
}

fn root() -> &'static Path {
    static ROOT: OnceLock<Root> = OnceLock::new();
    &ROOT
        .get_or_init(|| {
            let path = std::env::temp_dir().join(format!("sekisho-tests-{}", std::process::id()));
            std::fs::create_dir_all(&path).expect("create the scratch root");
            let watchdog = Command::new("sh")
                .arg("-c")
                .arg(r#"cat >/dev/null; rm -rf -- "$1""#)
                .arg("sh")
                .arg(&path)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the scratch-root watchdog");
            Root {
                path,
                _watchdog: watchdog,
            }
        })
        .path
}

/// A fresh, empty directory under the per-process root, named after `purpose`.
pub fn dir(purpose: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let path = root().join(format!("{purpose}-{n}"));
    std::fs::create_dir_all(&path).expect("create a scratch directory");
    path
}

/// Writes `contents` to `path` atomically: a sibling temporary file, then `rename`.
/// Readers (the gateway polling a CRL) see the old file or the new one, never half of one.
pub fn write_atomically(path: &Path, contents: &[u8]) {
    static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!("tmp{}", NEXT_TMP.fetch_add(1, Ordering::SeqCst)));
    let mut file = std::fs::File::create(&tmp).expect("create a temporary file");
    file.write_all(contents).expect("write a temporary file");
    file.sync_all().expect("sync a temporary file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

#[cfg(test)]
mod tests {
    #[test]
    fn directories_are_fresh_and_distinct() {
        let a = super::dir("t");
        let b = super::dir("t");
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
    }

    #[test]
    fn atomic_writes_replace_the_whole_file() {
        let path = super::dir("atomic").join("f.txt");
        super::write_atomically(&path, b"old contents");
        super::write_atomically(&path, b"new");
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
