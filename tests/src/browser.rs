//! A real browser for the tests: Debian's headless Chromium, driven over the DevTools
//! protocol (raw CDP on a websocket), with its own profile, its own NSS database (the test
//! server CA trusted, and optionally a device certificate that is presented without a
//! picker), and a virtual WebAuthn authenticator when a test asks for one.
//!
//! What makes this work headless (checked on this machine, see `shared/DESIGN.md`): the
//! NSS database lives under `$HOME/.pki/nssdb`, so each browser gets a scratch `HOME`; a
//! client certificate is sent only when the profile has an `auto_select_certificate` rule
//! for the origin; host names are mapped to the gateway by `--host-resolver-rules`, and
//! every other name resolves nowhere, so the browser never calls out.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::pki::{Credential, Pki};
use crate::scratch;

/// How long one DevTools command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the browser may take to start and print its DevTools address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What a browser profile holds.
#[derive(Debug)]
pub struct Profile<'a> {
    /// The test PKI: its server CA is trusted.
    pub pki: &'a Pki,
    /// A device certificate, imported and auto-selected for `origin`.
    pub device: Option<&'a Credential>,
    /// `https://host:port` the certificate is selected for.
    pub origin: String,
    /// `host` → IP, for `--host-resolver-rules`.
    pub hosts: Vec<(String, String)>,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A running headless Chromium with one page attached.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    outgoing: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: Mutex<u64>,
    session: String,
    /// The browser's stderr, for failure messages.
    stderr: Arc<Mutex<Vec<String>>>,
    _home: PathBuf,
}

impl Browser {
    /// Starts Chromium with a fresh profile and opens one blank page.
    pub async fn launch(profile: &Profile<'_>) -> Browser {
        let home = scratch::dir("browser");
        prepare_nss(&home, profile);
        let data = home.join("profile");
        write_preferences(&data, profile);
        let rules: Vec<String> = profile
            .hosts
            .iter()
            .map(|(host, ip)| format!("MAP {host} {ip}"))
            .chain(["MAP * ~NOTFOUND".to_owned()])
            .collect();
        let mut child = Command::new(chromium())
            .env("HOME", &home)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--password-store=basic",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", data.display()))
            .arg(format!("--host-resolver-rules={}", rules.join(", ")))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium (Debian package chromium; .ci/run installs it)");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (ws_tx, ws_rx) = std::sync::mpsc::channel();
        {
            let pipe = child.stderr.take().expect("piped stderr");
            let lines = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Some(at) = line.find("ws://") {
                        let _ = ws_tx.send(line[at..].trim().to_owned());
                    }
                    lines.lock().expect("stderr lines").push(line);
                }
            });
        }
        let ws_url = ws_rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "chromium printed no DevTools address within {START_TIMEOUT:?}:\n{}",
                stderr.lock().expect("stderr lines").join("\n")
            )
        });
        let (socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .expect("connect to the DevTools websocket");
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut queue) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = queue.recv().await {
                if sink.send(m).await.is_err() {
                    return;
                }
            }
        });
        let pending: Pending = Arc::default();
        let answers = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(text) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                // Events (no id) are not needed: tests poll the page's state instead.
                if let Some(id) = v.get("id").and_then(Value::as_u64)
                    && let Some(waiter) = answers.lock().expect("pending map").remove(&id)
                {
                    let _ = waiter.send(v);
                }
            }
        });
        let mut browser = Browser {
            child,
            outgoing,
            pending,
            next_id: Mutex::new(0),
            session: String::new(),
            stderr,
            _home: home,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"})).await;
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser
            .call("Target.attachToTarget", json!({"targetId": target_id, "flatten": true}))
            .await;
        browser.session = attached["sessionId"].as_str().expect("a session id").to_owned();
        browser.page("Page.enable", json!({})).await;
        browser.page("Runtime.enable", json!({})).await;
        browser
    }

    /// Adds a platform authenticator (CTAP2, internal, resident keys, user verification
    /// that always succeeds) and returns its id.
    pub async fn add_virtual_authenticator(&self) -> String {
        self.page("WebAuthn.enable", json!({"enableUI": false})).await;
        let added = self
            .page(
                "WebAuthn.addVirtualAuthenticator",
                json!({"options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": true,
                    "automaticPresenceSimulation": true,
                }}),
            )
            .await;
        added["authenticatorId"]
            .as_str()
            .expect("an authenticator id")
            .to_owned()
    }

    /// The credentials the virtual authenticator holds (id, rpId, signCount …).
    pub async fn credentials(&self, authenticator: &str) -> Vec<Value> {
        let r = self
            .page("WebAuthn.getCredentials", json!({"authenticatorId": authenticator}))
            .await;
        r["credentials"].as_array().cloned().unwrap_or_default()
    }

    /// Navigates and returns the navigation's error text (`net::ERR_…`), if any.
    pub async fn navigate(&self, url: &str) -> Option<String> {
        let r = self.page("Page.navigate", json!({"url": url})).await;
        r.get("errorText").and_then(Value::as_str).map(str::to_owned)
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&self, expression: &str) -> Value {
        let r = self
            .page(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true, "userGesture": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Clicks the element `selector` names, as a user gesture.
    pub async fn click(&self, selector: &str) {
        let js = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
            json!(selector)
        );
        let clicked = self.eval(&js).await;
        assert_eq!(
            clicked,
            json!(true),
            "no {selector} on the page\n{:?}",
            self.state().await
        );
    }

    /// Sets the value of the input `selector` names.
    pub async fn fill(&self, selector: &str, value: &str) {
        let js = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.value = {}; return true; }})()",
            json!(selector),
            json!(value)
        );
        assert_eq!(self.eval(&js).await, json!(true), "no {selector} on the page");
    }

    /// The page as it is now.
    pub async fn state(&self) -> Option<Page> {
        let v = self
            .eval(
                "JSON.stringify({path: location.pathname, ready: document.readyState, \
                 status: (performance.getEntriesByType('navigation')[0] || {}).responseStatus || 0, \
                 text: document.body ? document.body.innerText : ''})",
            )
            .await;
        v.as_str().and_then(|s| serde_json::from_str::<Page>(s).ok())
    }

    /// Waits until a loaded page is at `path` and the JavaScript `condition` holds there,
    /// and returns that page.
    pub async fn wait_for(&self, path: &str, condition: &str, within: Duration) -> Page {
        let deadline = Instant::now() + within;
        loop {
            if let Some(page) = self.state().await
                && page.path == path
                && page.ready == "complete"
                && self.eval(&format!("!!({condition})")).await == json!(true)
            {
                return page;
            }
            assert!(
                Instant::now() < deadline,
                "the browser did not reach {path} with {condition} within {within:?}; it is at {:?}\n{}",
                self.state().await,
                self.stderr_text()
            );
            tokio::time::sleep(crate::eventually::POLL_INTERVAL).await;
        }
    }

    /// The browser's stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lines").join("\n")
    }

    /// A command on the attached page.
    async fn page(&self, method: &str, params: Value) -> Value {
        self.send(method, params, Some(&self.session)).await
    }

    /// A command on the browser itself.
    async fn call(&self, method: &str, params: Value) -> Value {
        self.send(method, params, None).await
    }

    async fn send(&self, method: &str, params: Value, session: Option<&str>) -> Value {
        let id = {
            let mut next = self.next_id.lock().expect("id counter");
            *next += 1;
            *next
        };
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending map").insert(id, tx);
        self.outgoing
            .send(Message::Text(message.to_string().into()))
            .expect("the DevTools writer is running");
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, rx)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer within {COMMAND_TIMEOUT:?}"))
            .unwrap_or_else(|_| panic!("{method}: the DevTools connection closed"));
        if let Some(error) = answer.get("error") {
            panic!("{method} failed: {error}\n{}", self.stderr_text());
        }
        answer["result"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loaded page as the test sees it.
#[derive(Debug, serde::Deserialize)]
pub struct Page {
    pub path: String,
    pub ready: String,
    /// The HTTP status of the navigation (0 when the browser reports none).
    pub status: u16,
    pub text: String,
}

fn chromium() -> &'static str {
    "chromium"
}

/// Makes `$HOME/.pki/nssdb` with the server CA trusted and the device certificate (with its
/// key) imported.
fn prepare_nss(home: &Path, profile: &Profile<'_>) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("create the NSS directory");
    let db_arg = format!("sql:{}", db.display());
    run(Command::new("certutil").args(["-N", "--empty-password", "-d", &db_arg]));
    run(Command::new("certutil")
        .args(["-A", "-t", "C,,", "-n", "sekisho-test-server-ca", "-d", &db_arg, "-i"])
        .arg(&profile.pki.server_ca.cert_pem_path));
    if let Some(device) = profile.device {
        let p12 = home.join("device.p12");
        run(Command::new("openssl")
            .args(["pkcs12", "-export", "-passout", "pass:", "-out"])
            .arg(&p12)
            .arg("-in")
            .arg(&device.cert_pem_path)
            .arg("-inkey")
            .arg(&device.key_pem_path));
        run(Command::new("pk12util").args(["-W", "", "-d", &db_arg, "-i"]).arg(&p12));
    }
}

/// The profile's `Default/Preferences`: select the device certificate for the origin
/// without asking (headless Chromium would wait for an invisible picker otherwise).
fn write_preferences(data: &Path, profile: &Profile<'_>) {
    let default = data.join("Default");
    std::fs::create_dir_all(&default).expect("create the profile");
    let mut prefs = json!({});
    if profile.device.is_some() {
        let pattern = format!("{},*", profile.origin);
        prefs = json!({"profile": {"content_settings": {"exceptions": {"auto_select_certificate": {
            pattern: {"setting": {"filters": [{"ISSUER": {"CN": "Sekisho Device CA"}}]}}
        }}}}});
    }
    std::fs::write(default.join("Preferences"), prefs.to_string()).expect("write Preferences");
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (Debian packages libnss3-tools and openssl; .ci/run installs them)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
