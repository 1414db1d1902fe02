//! HTTP/2 for tests: a well-behaved request through the `h2` crate, and hand-written frames
//! for what `h2` refuses to send (connection-specific headers, CR/LF in values, a `:path`
//! without a leading slash, DATA that contradicts `content-length`).
//!
//! The raw side encodes HPACK as literals without indexing and never decodes the peer's
//! header blocks: a test learns "answered, reset, or went away", and judges by the upstream.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt as _;

use crate::client::ClientSpec;

/// One request through the `h2` crate: status and body, or the error text.
pub async fn request(
    spec: &ClientSpec,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let connection = spec.connect().await.map_err(|e| format!("connect: {e}"))?;
    if connection.tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err("the gateway did not negotiate h2".into());
    }
    let (mut sender, driver) = h2::client::handshake(connection.tls)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = driver.await;
    });
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(()).map_err(|e| format!("request: {e}"))?;
    let (response, mut stream) = sender
        .send_request(request, body.is_empty())
        .map_err(|e| format!("send: {e}"))?;
    if !body.is_empty() {
        stream
            .send_data(Bytes::copy_from_slice(body), true)
            .map_err(|e| format!("data: {e}"))?;
    }
    let response = tokio::time::timeout(crate::client::READ_TIMEOUT, response)
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("response: {e}"))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, bytes))
}

/// How a raw HTTP/2 exchange ended for our stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawOutcome {
    /// The server sent HEADERS on our stream (a response of some status).
    pub answered: bool,
    /// The server reset our stream.
    pub reset: bool,
    /// The server sent GOAWAY.
    pub goaway: bool,
    /// The connection ended (EOF or error).
    pub closed: bool,
    /// Failure before any frame could be sent (connect, ALPN).
    pub error: Option<String>,
}

/// A frame we send: HEADERS (fields, END_STREAM?) or DATA (bytes, END_STREAM?).
#[derive(Clone, Debug)]
pub enum Frame {
    Headers(Vec<(Vec<u8>, Vec<u8>)>, bool),
    Data(Vec<u8>, bool),
}

/// Opens a connection (ALPN h2), sends the preface, then `frames` on stream 1, and reads
/// until the stream is answered and ended, reset, GOAWAY, close, or the timeout.
pub async fn exchange(spec: &ClientSpec, frames: &[Frame], timeout: Duration) -> RawOutcome {
    let mut outcome = RawOutcome::default();
    let mut connection = match spec.connect().await {
        Ok(c) => c,
        Err(e) => {
            outcome.error = Some(format!("connect: {e}"));
            return outcome;
        }
    };
    if connection.tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        outcome.error = Some("the gateway did not negotiate h2".into());
        return outcome;
    }
    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    wire.extend(frame(0x4, 0, 0, &[]));
    for f in frames {
        match f {
            Frame::Headers(fields, end) => {
                let flags = 0x4 | if *end { 0x1 } else { 0 };
                wire.extend(frame(0x1, flags, 1, &hpack_literals(fields)));
            }
            Frame::Data(bytes, end) => {
                wire.extend(frame(0x0, u8::from(*end), 1, bytes));
            }
        }
    }
    if connection.send(&wire).await.is_err() {
        outcome.closed = true;
        return outcome;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = Vec::new();
    loop {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5] & 0x7f, buf[6], buf[7], buf[8]]);
            buf.drain(..9 + len);
            match kind {
                0x1 if stream == 1 => {
                    outcome.answered = true;
                    if flags & 0x1 != 0 {
                        return outcome;
                    }
                }
                0x0 if stream == 1 && flags & 0x1 != 0 => return outcome,
                0x3 if stream == 1 => {
                    outcome.reset = true;
                    return outcome;
                }
                0x7 => {
                    outcome.goaway = true;
                    return outcome;
                }
                0x4 if flags & 0x1 == 0 => {
                    let _ = connection.send(&frame(0x4, 0x1, 0, &[])).await;
                }
                _ => {}
            }
        }
        let mut chunk = vec![0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, connection.tls.read(&mut chunk)).await {
            Err(_) => return outcome,
            Ok(Ok(0)) | Ok(Err(_)) => {
                outcome.closed = true;
                return outcome;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An HTTP/2 flood: what is sent over and over on one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flood {
    /// HEADERS (a complete GET) on a new stream, then RST_STREAM(CANCEL) on it (CVE-2023-44487).
    RapidReset,
    /// One HEADERS without END_HEADERS, then CONTINUATION frames of header fields that never
    /// end (the 2024 CONTINUATION flood).
    Continuation,
}

/// How a flood ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FloodOutcome {
    /// Frames written before the server stopped taking them (or the budget ran out).
    pub frames_sent: usize,
    /// Bytes written.
    pub bytes_sent: usize,
    /// The server sent GOAWAY.
    pub goaway: bool,
    /// The connection ended (EOF, reset or a write error).
    pub closed: bool,
    /// Failure before any frame could be sent (connect, ALPN).
    pub error: Option<String>,
}

/// Floods one connection with `kind` for at most `budget` frames, reading concurrently; stops
/// early once the server sends GOAWAY or closes, then waits up to `linger` for the close.
pub async fn flood(spec: &ClientSpec, host: &str, kind: Flood, budget: usize, linger: Duration) -> FloodOutcome {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncWriteExt as _;
    let mut outcome = FloodOutcome::default();
    let connection = match spec.connect().await {
        Ok(c) => c,
        Err(e) => {
            outcome.error = Some(format!("connect: {e}"));
            return outcome;
        }
    };
    if connection.tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        outcome.error = Some("the gateway did not negotiate h2".into());
        return outcome;
    }
    let (mut reader, mut writer) = tokio::io::split(connection.tls);
    let goaway = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(AtomicBool::new(false));
    let (seen_goaway, seen_end) = (goaway.clone(), ended.clone());
    let reading = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            while buf.len() >= 9 {
                let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                if buf[3] == 0x7 {
                    seen_goaway.store(true, Ordering::SeqCst);
                }
                buf.drain(..9 + len);
            }
        }
        seen_end.store(true, Ordering::SeqCst);
    });
    let request = fields(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", host),
        (":path", "/public/"),
    ]);
    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    wire.extend(frame(0x4, 0, 0, &[]));
    if kind == Flood::Continuation {
        wire.extend(frame(0x1, 0x0, 1, &hpack_literals(&request)));
    }
    // One block of junk header fields for CONTINUATION frames (about 8 KiB).
    let junk: Vec<(Vec<u8>, Vec<u8>)> = (0..64)
        .map(|i| (format!("x-flood-{i}").into_bytes(), vec![b'a'; 110]))
        .collect();
    let junk = hpack_literals(&junk);
    let mut stream: u32 = 1;
    while outcome.frames_sent < budget {
        if goaway.load(Ordering::SeqCst) || ended.load(Ordering::SeqCst) {
            break;
        }
        // A batch of frames per write, so the flood is not limited by syscalls.
        for _ in 0..32 {
            match kind {
                Flood::RapidReset => {
                    wire.extend(frame(0x1, 0x5, stream, &hpack_literals(&request)));
                    wire.extend(frame(0x3, 0, stream, &8u32.to_be_bytes()));
                    stream = stream.wrapping_add(2) & 0x7fff_ffff;
                    outcome.frames_sent += 2;
                }
                Flood::Continuation => {
                    wire.extend(frame(0x9, 0, 1, &junk));
                    outcome.frames_sent += 1;
                }
            }
        }
        outcome.bytes_sent += wire.len();
        if writer.write_all(&wire).await.is_err() {
            outcome.closed = true;
            break;
        }
        wire.clear();
    }
    let _ = tokio::time::timeout(linger, reading).await;
    outcome.goaway = goaway.load(Ordering::SeqCst);
    outcome.closed |= ended.load(Ordering::SeqCst);
    outcome
}

/// Opens an HTTP/2 connection and keeps it busy without ever making a request: one
/// WINDOW_UPDATE frame (increment 1, which the server does not answer) every `every`.
/// Returns how long the gateway kept the connection open, or `None` if it was still open
/// after `at_most`.
pub async fn trickle_without_request(spec: &ClientSpec, every: Duration, at_most: Duration) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    let mut connection = spec.connect().await.ok()?;
    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    wire.extend(frame(0x4, 0, 0, &[]));
    if connection.send(&wire).await.is_err() {
        return Some(started.elapsed());
    }
    while started.elapsed() < at_most {
        // Drain whatever the gateway sends (SETTINGS, GOAWAY); EOF means it let go.
        let mut chunk = vec![0u8; 4096];
        match tokio::time::timeout(every, connection.tls.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) | Err(_) => {}
        }
        if connection.send(&frame(0x8, 0, 0, &1u32.to_be_bytes())).await.is_err() {
            return Some(started.elapsed());
        }
    }
    None
}

/// Shorthand for a header field list from text.
pub fn fields(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK "literal header field without indexing — new name", no Huffman.
fn hpack_literals(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, name.len(), 7, 0x00);
        out.extend_from_slice(name);
        hpack_int(&mut out, value.len(), 7, 0x00);
        out.extend_from_slice(value);
    }
    out
}

fn hpack_int(out: &mut Vec<u8>, mut value: usize, prefix_bits: u32, first_byte_flags: u8) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first_byte_flags | value as u8);
        return;
    }
    out.push(first_byte_flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    #[test]
    fn hpack_integers_follow_rfc_7541_c_1() {
        let mut out = Vec::new();
        super::hpack_int(&mut out, 10, 5, 0);
        assert_eq!(out, vec![10]);
        out.clear();
        super::hpack_int(&mut out, 1337, 5, 0);
        assert_eq!(out, vec![31, 154, 10]);
    }

    #[test]
    fn frames_carry_length_type_flags_and_stream() {
        let f = super::frame(0x1, 0x5, 1, b"abc");
        assert_eq!(f, vec![0, 0, 3, 1, 5, 0, 0, 0, 1, b'a', b'b', b'c']);
    }
}
