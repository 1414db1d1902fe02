//! Delivery of one notice: one mail per recipient (so the user never sees the admin's
//! address), then one webhook call. Each step has [`super::DELIVERY_TIMEOUT`]; failures are
//! logged and never retried (the diagnostics log already holds the notice).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use sekisho_policy::{Smtp, SmtpTls};

use super::{DELIVERY_TIMEOUT, Job, Notice};

pub(super) async fn job(job: &Job) {
    if let Some(smtp) = &job.settings.smtp {
        if job.to.is_empty() {
            tracing::warn!(
                event = job.notice.kind(),
                "notice not mailed: neither the user nor admin_email has an address"
            );
        }
        for to in &job.to {
            let sent = tokio::time::timeout(DELIVERY_TIMEOUT, mail(smtp, to, job)).await;
            match sent {
                Ok(Ok(())) => tracing::info!(event = job.notice.kind(), to = %to, "notice mailed"),
                Ok(Err(e)) => tracing::error!(event = job.notice.kind(), to = %to, error = %e, "notice mail failed"),
                Err(_) => tracing::error!(event = job.notice.kind(), to = %to, "notice mail timed out"),
            }
        }
    }
    if let Some(url) = &job.settings.webhook_url {
        match tokio::time::timeout(DELIVERY_TIMEOUT, webhook(url, job)).await {
            Ok(Ok(())) => tracing::info!(event = job.notice.kind(), "notice posted to the webhook"),
            Ok(Err(e)) => tracing::error!(event = job.notice.kind(), error = %e, "notice webhook failed"),
            Err(_) => tracing::error!(event = job.notice.kind(), "notice webhook timed out"),
        }
    }
}

/// Subject line: a fixed prefix, the event and the user.
fn subject(notice: &Notice) -> String {
    format!("[Sekisho] {}: {}", notice.kind(), notice.user())
}

/// The mail body: Japanese, English, then the fields.
fn body(job: &Job) -> String {
    let n = &job.notice;
    format!(
        "{}\n{}\n\nevent: {}\nuser: {}\ngateway: {}\n\n-- \nSekisho\n",
        n.text_ja(),
        n.text(),
        n.kind(),
        n.user(),
        job.gateway
    )
}

async fn mail(smtp: &Smtp, to: &str, job: &Job) -> Result<(), String> {
    let builder = match smtp.tls {
        // The policy allows this only for a loopback host.
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| format!("smtp tls setup: {e}"))?,
        SmtpTls::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(|e| format!("smtp tls setup: {e}"))?
        }
    };
    let hello = if job.gateway.is_empty() {
        ClientId::default()
    } else {
        ClientId::Domain(job.gateway.clone())
    };
    let mut builder = builder
        .port(smtp.port)
        .timeout(Some(DELIVERY_TIMEOUT))
        .hello_name(hello);
    if let (Some(user), Some(file)) = (&smtp.user, &smtp.password_file) {
        builder = builder.credentials(Credentials::new(user.clone(), password(file).await?));
    }
    let transport = builder.build();
    let from: Mailbox = smtp.from.parse().map_err(|e| format!("from address: {e}"))?;
    let to: Mailbox = to.parse().map_err(|e| format!("recipient address: {e}"))?;
    // 8bit keeps the text readable as sent (servers without 8BITMIME get lettre's choice).
    let body =
        Body::new_with_encoding(body(job).replace('\n', "\r\n"), ContentTransferEncoding::EightBit).or_else(|raw| {
            String::from_utf8(raw)
                .map(Body::new)
                .map_err(|_| "mail body".to_string())
        })?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(subject(&job.notice))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| format!("mail: {e}"))?;
    transport.send(message).await.map_err(|e| format!("smtp: {e}"))?;
    Ok(())
}

/// The SMTP password: the file's first line. Read at each send, so a rotated password needs
/// no restart; a world-readable file is refused.
async fn password(file: &str) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = tokio::fs::metadata(file)
            .await
            .map_err(|e| format!("smtp_password_file {file}: {e}"))?;
        if meta.permissions().mode() & 0o004 != 0 {
            return Err(format!("smtp_password_file {file} is world-readable; chmod o-r it"));
        }
    }
    let text = tokio::fs::read_to_string(file)
        .await
        .map_err(|e| format!("smtp_password_file {file}: {e}"))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(format!("smtp_password_file {file} is empty"));
    }
    Ok(line.to_owned())
}

/// The webhook's JSON body.
pub(super) fn json(job: &Job) -> serde_json::Value {
    let n = &job.notice;
    serde_json::json!({
        "event": n.kind(),
        "user": n.user(),
        "text": n.text(),
        "text_ja": n.text_ja(),
        "gateway": job.gateway,
    })
}

async fn webhook(url: &str, job: &Job) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("webhook_url: {e}"))?;
    let host = parsed.host_str().ok_or("webhook_url has no host")?.to_owned();
    let port = parsed.port_or_known_default().ok_or("webhook_url has no port")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let target = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let body = serde_json::to_vec(&json(job)).map_err(|e| format!("json: {e}"))?;
    let request = http::Request::post(target)
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "sekisho-notify")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    let status = match parsed.scheme() {
        "https" => {
            let config = client_config()?;
            let name = rustls_pki_types::ServerName::try_from(bare.clone()).map_err(|e| format!("server name: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            post(TokioIo::new(tls), request).await?
        }
        "http" => post(TokioIo::new(tcp), request).await?,
        other => return Err(format!("webhook_url scheme {other}")),
    };
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("webhook answered {status}"))
    }
}

async fn post<IO>(io: IO, request: http::Request<Full<Bytes>>) -> Result<http::StatusCode, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("http: {e}"))?;
    let driver = tokio::spawn(conn);
    let response = sender.send_request(request).await.map_err(|e| format!("http: {e}"))?;
    let status = response.status();
    // Read (and discard) the answer so the connection ends cleanly.
    let _ = response.into_body().collect().await;
    driver.abort();
    Ok(status)
}

/// rustls (ring) with the system's roots.
fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("no system root certificates for the https webhook".into());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(notice: Notice) -> Job {
        Job {
            notice,
            to: vec!["alice@gw.test".into()],
            settings: sekisho_policy::NotifySettings::default(),
            gateway: "admin.gw.test".into(),
        }
    }

    #[test]
    fn bodies_name_the_user_and_the_event_in_both_languages() {
        let j = job(Notice::FactorEnrolled {
            user: "alice".into(),
            factor: "totp",
            id: "totp-1".into(),
        });
        let b = body(&j);
        assert!(b.contains("alice enrolled a totp factor"), "{b}");
        assert!(b.contains("alice さんが二要素認証の totp を登録しました"), "{b}");
        assert!(b.contains("event: factor_enrolled"), "{b}");
        assert_eq!(subject(&j.notice), "[Sekisho] factor_enrolled: alice");
        let v = json(&j);
        assert_eq!(v["event"], "factor_enrolled");
        assert_eq!(v["user"], "alice");
    }
}
