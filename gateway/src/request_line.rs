//! Watches the plaintext of an HTTP/1 connection for request lines whose target holds a
//! `#`. hyper hands the gateway a `Uri` from which the `http` crate has already cut the
//! fragment, so `GET /public#/../admin/` would otherwise reach the pipeline as `/public`
//! with no trace of the rest (corpus PATH-033). A request-target never legitimately
//! carries a fragment (RFC 9112 §3.2), so the connection is marked and every request on it
//! refused from then on.
//!
//! The watcher looks at every line, bodies included: a body line that looks exactly like
//! a request line with a `#` in its target refuses the connection too. That is a visible
//! 400, never a silent change, and it cannot happen to a browser's or an app's traffic in
//! practice. It never modifies a byte.

/// Line-by-line state over a byte stream, with a bounded carry-over.
#[derive(Debug)]
pub struct FragmentWatch {
    /// The unfinished line carried between reads (only while it could still matter).
    tail: Vec<u8>,
    /// The unfinished line is longer than any request line the gateway accepts.
    overlong: bool,
    max_line: usize,
}

impl FragmentWatch {
    pub fn new(max_line: usize) -> Self {
        Self {
            tail: Vec::new(),
            overlong: false,
            max_line: max_line.saturating_add(32),
        }
    }

    /// Feeds newly read bytes; true if a request line with a fragment was completed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut seen = false;
        while let Some(nl) = bytes.iter().position(|b| *b == b'\n') {
            let (line, rest) = bytes.split_at(nl);
            if !self.overlong {
                if self.tail.is_empty() {
                    seen |= is_request_line_with_fragment(line);
                } else {
                    self.tail.extend_from_slice(line);
                    seen |= is_request_line_with_fragment(&self.tail);
                }
            }
            self.tail.clear();
            self.overlong = false;
            bytes = rest.get(1..).unwrap_or(&[]);
        }
        if !self.overlong {
            if self.tail.len() + bytes.len() > self.max_line {
                self.tail.clear();
                self.overlong = true;
            } else {
                self.tail.extend_from_slice(bytes);
            }
        }
        seen
    }
}

/// `METHOD SP target SP HTTP/x.y` (CR optional) with a `#` in the target.
fn is_request_line_with_fragment(line: &[u8]) -> bool {
    if !line.contains(&b'#') {
        return false;
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !method.is_empty()
        && method.len() <= 32
        && method
            .iter()
            .all(|b| b.is_ascii_uppercase() || *b == b'-' || *b == b'_')
        && target.contains(&b'#')
        && version.starts_with(b"HTTP/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fragments_in_request_lines_across_reads() {
        let mut w = FragmentWatch::new(8192);
        assert!(!w.feed(b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!w.feed(b"GET /public#/"));
        assert!(w.feed(b"../admin/ HTTP/1.1\r\nHost: a\r\n\r\n"));
        let mut w = FragmentWatch::new(8192);
        assert!(w.feed(b"GET /#/../admin/ HTTP/1.1\nHost: a\n\n"));
    }

    #[test]
    fn ignores_fragments_elsewhere() {
        let mut w = FragmentWatch::new(8192);
        assert!(!w.feed(b"POST /form HTTP/1.1\r\nX-Color: #fff\r\nContent-Length: 12\r\n\r\ncolor=%23fff"));
        assert!(!w.feed(b"a line with # but not a request\r\n"));
        assert!(!w.feed(b"GET /a?b=%23 HTTP/1.1\r\n"));
    }

    #[test]
    fn overlong_lines_are_not_buffered() {
        let mut w = FragmentWatch::new(16);
        assert!(!w.feed(&[b'a'; 100]));
        assert!(w.tail.is_empty());
        assert!(!w.feed(b"#x HTTP/1.1\r\n"));
        assert!(w.feed(b"GET /# HTTP/1.1\r\n"));
    }
}
