//! Which host a request is for. The Host header (or `:authority`) must be single, plain
//! (`name` or `name:port`, no userinfo), equal to the TLS SNI, and served by this
//! gateway. Anything else is refused: the gateway never routes on a name the TLS layer
//! did not see (corpus class host-sni-vhost).

use crate::error::Refusal;
use http::{HeaderMap, Uri, Version, header};

/// The served host of a request: lower-case, without port.
pub fn request_host(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
    sni: Option<&str>,
    serves: impl Fn(&str) -> bool,
) -> Result<String, Refusal> {
    let mut host_headers = headers.get_all(header::HOST).iter();
    let host_header = host_headers.next();
    if host_headers.next().is_some() {
        return Err(Refusal::BadRequest("duplicate_host"));
    }
    let host_header = match host_header {
        Some(v) => Some(v.to_str().map_err(|_| Refusal::BadRequest("bad_host"))?),
        None => None,
    };
    let authority = uri.authority().map(|a| a.as_str());

    // HTTP/2 carries :authority; HTTP/1.1 a Host header, and an absolute-form target may
    // name the host too. Whatever is present must agree (SMUG-028, absolute-form cases).
    let claimed = match (version, authority, host_header) {
        (_, Some(a), Some(h)) => {
            let a = parse_host(a)?;
            let h = parse_host(h)?;
            if a != h {
                return Err(Refusal::BadRequest("authority_host_mismatch"));
            }
            a
        }
        (_, Some(a), None) => parse_host(a)?,
        (_, None, Some(h)) => parse_host(h)?,
        (_, None, None) => return Err(Refusal::BadRequest("missing_host")),
    };

    let Some(sni) = sni else {
        return Err(Refusal::MisdirectedRequest("no_sni"));
    };
    if !claimed.eq_ignore_ascii_case(sni) {
        return Err(Refusal::MisdirectedRequest("host_sni_mismatch"));
    }
    if !serves(&claimed) {
        return Err(Refusal::MisdirectedRequest("host_not_served"));
    }
    Ok(claimed)
}

/// Parses `name` or `name:port` strictly: DNS letters, digits, `-` and `.` only (which
/// rules out userinfo, paths and spaces); the port, if any, all digits. A trailing dot is
/// kept, so it then fails to equal the SNI (HOST-002).
pub(crate) fn parse_host(raw: &str) -> Result<String, Refusal> {
    let (name, port) = match raw.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (raw, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Refusal::BadRequest("bad_host"));
    }
    if name.is_empty()
        || name.len() > 253
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(Refusal::BadRequest("bad_host"));
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: Option<&str>, sni: Option<&str>) -> Result<String, Refusal> {
        let mut headers = HeaderMap::new();
        if let Some(h) = host {
            headers.insert(header::HOST, h.parse().unwrap());
        }
        request_host(Version::HTTP_11, &"/".parse().unwrap(), &headers, sni, |h| {
            h == "admin.gw.test" || h == "public.gw.test"
        })
    }

    #[test]
    fn host_must_match_sni_and_be_served() {
        assert_eq!(
            check(Some("admin.gw.test"), Some("admin.gw.test")).unwrap(),
            "admin.gw.test"
        );
        assert_eq!(
            check(Some("ADMIN.gw.test:8443"), Some("admin.gw.test")).unwrap(),
            "admin.gw.test"
        );
        assert_eq!(
            check(Some("public.gw.test"), Some("admin.gw.test"))
                .unwrap_err()
                .status(),
            421
        );
        assert_eq!(
            check(Some("admin.gw.test."), Some("admin.gw.test"))
                .unwrap_err()
                .status(),
            421
        );
        assert_eq!(
            check(Some("evil.example"), Some("evil.example")).unwrap_err().status(),
            421
        );
        assert_eq!(check(Some("admin.gw.test"), None).unwrap_err().status(), 421);
        assert_eq!(check(None, Some("admin.gw.test")).unwrap_err().status(), 400);
        assert_eq!(
            check(Some("public.gw.test@admin.gw.test"), Some("admin.gw.test"))
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            check(Some("admin.gw.test:x"), Some("admin.gw.test"))
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn duplicate_host_headers_are_refused() {
        let mut headers = HeaderMap::new();
        headers.append(header::HOST, "public.gw.test".parse().unwrap());
        headers.append(header::HOST, "admin.gw.test".parse().unwrap());
        let r = request_host(
            Version::HTTP_11,
            &"/".parse().unwrap(),
            &headers,
            Some("admin.gw.test"),
            |_| true,
        );
        assert_eq!(r.unwrap_err(), Refusal::BadRequest("duplicate_host"));
    }

    #[test]
    fn absolute_form_must_name_the_same_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "admin.gw.test".parse().unwrap());
        let uri: Uri = "https://public.gw.test/admin/".parse().unwrap();
        let r = request_host(Version::HTTP_11, &uri, &headers, Some("admin.gw.test"), |_| true);
        assert_eq!(r.unwrap_err().status(), 400);
    }
}
