//! Fuzz target: `canonicalize_target` never panics, and it is idempotent through the upstream
//! encoder: re-canonicalising `upstream_path_and_query()` gives the same path and query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_policy::canonicalize_target;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = canonicalize_target(target) else {
        return;
    };
    assert!(c.path.starts_with('/'));
    let up = c.upstream_path_and_query();
    let again = match canonicalize_target(&up) {
        Ok(again) => again,
        Err(e) => panic!("{target:?} → {up:?} refused: {e}"),
    };
    assert_eq!(again.path, c.path, "{target:?} → {up:?}");
    assert_eq!(again.query, c.query, "{target:?} → {up:?}");
    assert_eq!(again.upstream_path_and_query(), up);
});
