// Sekisho's only script: runs navigator.credentials for passkey login and enrolment.
"use strict";
(function () {
  const b64u = {
    dec: (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4)), (c) => c.charCodeAt(0)),
    enc: (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""),
  };
  function field(id) { const e = document.querySelector(id); return e ? e.value : ""; }
  async function post(url, data) {
    const r = await fetch(url, { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(data) });
    if (!r.ok) throw new Error("refused");
    return r.json();
  }
  function fail(form) {
    const p = document.createElement("p"); p.className = "error"; p.setAttribute("role", "alert");
    p.textContent = document.documentElement.lang === "ja" ? "失敗しました。もう一度お試しください。" : "That did not work. Please try again.";
    form.prepend(p);
  }
  const login = document.querySelector("#passkey-login");
  if (login) login.addEventListener("click", async () => {
    const form = document.querySelector("#login");
    try {
      const csrf = field("input[name=csrf]");
      const start = await post("/.sekisho/login/webauthn/start", { user: field("#user"), csrf });
      const pk = start.options.publicKey;
      pk.challenge = b64u.dec(pk.challenge);
      (pk.allowCredentials || []).forEach((c) => { c.id = b64u.dec(c.id); });
      const cred = await navigator.credentials.get({ publicKey: pk });
      const answer = { id: cred.id, rawId: b64u.enc(cred.rawId), type: cred.type, extensions: {},
        response: { authenticatorData: b64u.enc(cred.response.authenticatorData), clientDataJSON: b64u.enc(cred.response.clientDataJSON),
          signature: b64u.enc(cred.response.signature), userHandle: cred.response.userHandle ? b64u.enc(cred.response.userHandle) : null } };
      const done = await post("/.sekisho/login/webauthn/finish", { ceremony: start.ceremony, credential: JSON.stringify(answer), csrf, return: field("input[name=return]") });
      window.location.assign(done.redirect);
    } catch (e) { fail(form); }
  });
  const enrol = document.querySelector("#passkey-enrol");
  if (enrol) enrol.addEventListener("click", async () => {
    const form = document.querySelector("#enrol");
    try {
      const csrf = field("input[name=csrf]");
      const start = await post("/.sekisho/enrol/webauthn/start", { enrol: field("#enrol-id"), csrf });
      const pk = start.options.publicKey;
      pk.challenge = b64u.dec(pk.challenge);
      pk.user.id = b64u.dec(pk.user.id);
      (pk.excludeCredentials || []).forEach((c) => { c.id = b64u.dec(c.id); });
      const cred = await navigator.credentials.create({ publicKey: pk });
      const answer = { id: cred.id, rawId: b64u.enc(cred.rawId), type: cred.type, extensions: {},
        response: { attestationObject: b64u.enc(cred.response.attestationObject), clientDataJSON: b64u.enc(cred.response.clientDataJSON) } };
      const done = await post("/.sekisho/enrol/webauthn/finish", { ceremony: start.ceremony, credential: JSON.stringify(answer), csrf });
      window.location.assign(done.redirect);
    } catch (e) { fail(form); }
  });
})();
