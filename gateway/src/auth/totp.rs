//! TOTP (RFC 6238 through totp-rs): 6 digits, 30-second steps, one step of skew either way.
//! totp-rs compares codes in constant time but knows nothing of replay: each user's last
//! accepted step is kept in the store and a code is accepted only for a later step, by an
//! atomic compare-and-swap (of two concurrent requests with one code, exactly one wins).

use crate::store::{Store, StoreError, Tree};
use totp_rs::{Algorithm, Totp};

pub const DIGITS: u8 = 6;
pub const STEP: u64 = 30;
pub const SKEW: u16 = 1;
/// Secret length in bytes (160 bits, as RFC 4226 recommends).
pub const SECRET_BYTES: usize = 20;

/// A TOTP generator for `secret`. `None` only for a secret of the wrong length.
pub fn totp(secret: &[u8], account: &str, issuer: &str) -> Option<Totp> {
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(SKEW)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(issuer))
        .build()
        .ok()
}

/// The time step `code` is valid for at `now` (±1 step), or `None`.
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<u64> {
    let t = totp(secret, "", "Sekisho")?;
    let code = code.trim();
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = u64::try_from(now).ok()?;
    t.check(code, now)
}

/// The `otpauth://` URI for an authenticator app.
pub fn otpauth_uri(secret: &[u8], account: &str, issuer: &str) -> Option<String> {
    totp(secret, account, issuer)?.to_url().ok()
}

/// Records `step` as used for `user` if it is later than the last used step. Returns
/// `false` for a replay (the step, or a later one, was already used).
pub fn claim_step(store: &dyn Store, user: &str, step: u64) -> Result<bool, StoreError> {
    loop {
        let old = store.get(Tree::TotpSteps, user.as_bytes())?;
        let last = old
            .as_deref()
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes);
        if last.is_some_and(|l| step <= l) {
            return Ok(false);
        }
        if store.compare_and_swap(
            Tree::TotpSteps,
            user.as_bytes(),
            old.as_deref(),
            Some(&step.to_be_bytes()),
        )? {
            store.flush()?;
            return Ok(true);
        }
    }
}

/// The QR code of `text` as a self-contained SVG (no external resources).
pub fn qr_svg(text: &str) -> Option<String> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let border = 4;
    let size = qr.size() + border * 2;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" width=\"240\" height=\"240\" \
         role=\"img\" aria-label=\"QR\" shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" \
         fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, truncated to 6 digits.
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(
                matching_step(secret, code, t),
                Some(u64::try_from(t).unwrap() / 30),
                "t={t}"
            );
        }
    }

    #[test]
    fn malformed_codes_never_match() {
        let secret = b"12345678901234567890";
        for code in ["", "28708", "2870820", "28708a", "+87082", "28 082"] {
            assert_eq!(matching_step(secret, code, 59), None, "{code:?}");
        }
    }
}
