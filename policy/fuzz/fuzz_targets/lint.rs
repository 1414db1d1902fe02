//! Lint never panics: any text that parses as a policy is linted, and every finding points
//! inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(policy) = sekisho_policy::parse("fuzz.toml", text) {
        for f in sekisho_policy::lint(&policy, "fuzz.toml", text) {
            assert!(f.line >= 1 && f.line <= text.lines().count() + 1);
        }
        let facts = sekisho_policy::FileFacts {
            tls_cert_self_signed: Some("CN=fuzz".into()),
        };
        for f in sekisho_policy::lint_files("fuzz.toml", text, &facts) {
            assert!(f.line >= 1 && f.line <= text.lines().count() + 1);
        }
        if let Ok(tests) = sekisho_policy::read_tests("fuzz.toml", text, false) {
            let _ = sekisho_policy::run_tests(&policy, &tests);
        }
    }
});
