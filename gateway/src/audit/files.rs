//! The log's files: names, listing, reading (plain or gzip), compression and retention.
//!
//! A file is `access-YYYY-MM-DD.NNNNNN.jsonl`: the UTC date it was opened and its number,
//! which grows by one with every file (rotation at midnight UTC and every start), so a
//! missing file shows as a gap. Closed files become `….jsonl.gz` (written aside, fsynced,
//! renamed, then the plain file removed); readers accept either.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

/// One file of the log, as found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub no: u64,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub path: PathBuf,
    pub compressed: bool,
}

impl LogFile {
    /// The file's name without `.gz` (what a `file` record names).
    pub fn name(&self) -> String {
        file_name(&self.date, self.no)
    }

    /// The whole (decompressed) content.
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        let raw = std::fs::read(&self.path)?;
        if !self.compressed {
            return Ok(raw);
        }
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out)?;
        Ok(out)
    }
}

/// `access-DATE.NNNNNN.jsonl`.
pub fn file_name(date: &str, no: u64) -> String {
    format!("access-{date}.{no:06}.jsonl")
}

/// The UTC date of a Unix time, `YYYY-MM-DD`.
pub fn date_of(unix: i64) -> String {
    let d = time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The Unix time of midnight UTC starting a `YYYY-MM-DD` date.
pub fn day_start(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: u8 = parts.next()?.parse().ok()?;
    let d: u8 = parts.next()?.parse().ok()?;
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

fn parse_name(name: &str) -> Option<(String, u64, bool)> {
    let rest = name.strip_prefix("access-")?;
    let (rest, compressed) = match rest.strip_suffix(".jsonl.gz") {
        Some(r) => (r, true),
        None => (rest.strip_suffix(".jsonl")?, false),
    };
    let (date, no) = rest.split_once('.')?;
    if date.len() != 10 || day_start(date).is_none() || no.len() < 6 || !no.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((date.to_owned(), no.parse().ok()?, compressed))
}

/// The log's files in order of their numbers. When a file exists both plain and
/// compressed (a compression interrupted before the plain file was removed), the plain
/// one is listed.
pub fn list(dir: &Path) -> std::io::Result<Vec<LogFile>> {
    let mut out: Vec<LogFile> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((date, no, compressed)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        out.push(LogFile {
            no,
            date,
            path: entry.path(),
            compressed,
        });
    }
    out.sort_by_key(|f| (f.no, f.compressed));
    out.dedup_by(|later, earlier| later.no == earlier.no && later.date == earlier.date);
    Ok(out)
}

/// Compresses a closed file: `NAME.gz.tmp` written and fsynced, renamed to `NAME.gz`, the
/// directory fsynced, then the plain file removed.
pub fn compress(file: &LogFile) -> std::io::Result<()> {
    if file.compressed {
        return Ok(());
    }
    let dir = file.path.parent().unwrap_or(Path::new("."));
    let gz = dir.join(format!("{}.gz", file.name()));
    let tmp = dir.join(format!("{}.gz.tmp", file.name()));
    let plain = std::fs::read(&file.path)?;
    let out = std::fs::File::create(&tmp)?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    enc.write_all(&plain)?;
    let out = enc.finish()?;
    out.sync_all()?;
    std::fs::rename(&tmp, &gz)?;
    super::seal::sync_dir(dir)?;
    std::fs::remove_file(&file.path)?;
    super::seal::sync_dir(dir)
}

/// The files old enough to delete at `now`: every record of a file dated D is older than
/// the end of day D, so it may go once `now` is past D + 1 day + `days`. The newest file
/// is never returned.
pub fn expired(files: &[LogFile], now: i64, days: u64) -> Vec<LogFile> {
    let keep = i64::try_from(days.saturating_add(1).saturating_mul(86_400)).unwrap_or(i64::MAX);
    let newest = files.iter().map(|f| f.no).max();
    files
        .iter()
        .filter(|f| Some(f.no) != newest)
        .filter(|f| day_start(&f.date).is_some_and(|start| now > start.saturating_add(keep)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(file_name("2026-03-01", 7), "access-2026-03-01.000007.jsonl");
        assert_eq!(
            parse_name("access-2026-03-01.000007.jsonl.gz"),
            Some(("2026-03-01".into(), 7, true))
        );
        assert_eq!(parse_name("access.jsonl"), None);
        assert_eq!(parse_name("access-2026-13-01.000007.jsonl"), None);
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(day_start("1970-01-02"), Some(86_400));
    }

    #[test]
    fn nothing_younger_than_the_retention_is_expired() {
        let f = |no, date: &str| LogFile {
            no,
            date: date.into(),
            path: PathBuf::new(),
            compressed: true,
        };
        let files = [f(1, "2025-01-01"), f(2, "2025-01-02"), f(3, "2026-06-01")];
        let day = 86_400;
        let jan1 = day_start("2025-01-01").unwrap();
        // One day past 365 days after the end of Jan 1st: only file 1 goes.
        let now = jan1 + day + 365 * day + 1;
        assert_eq!(expired(&files, now, 365), vec![files[0].clone()]);
        assert!(expired(&files, now - 2, 365).is_empty());
    }
}
