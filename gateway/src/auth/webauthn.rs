//! WebAuthn ceremonies (webauthn-rs): passkeys and security keys with user verification
//! required, the origin and rp id exact (the rp id is the host the browser is on), and
//! every ceremony state taken out of the store before it is verified, so an answer can be
//! used once. A signature counter that does not move forward refuses the login, leaves
//! the stored counter as it was, and raises an alert.

use super::records::{self, FactorKind};
use super::{Auth, CEREMONY_TTL, Ceremony, Client, Origin, Refused, Step, lockout, names};
use sekisho_policy::{Factor, Policy};
use url::Url;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse,
    Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

/// The relying party for the origin the browser is on: exact origin, no subdomains, no
/// other port.
pub fn relying_party(origin: &Origin) -> Result<Webauthn, Refused> {
    let url = Url::parse(&origin.url()).map_err(|_| Refused("webauthn_bad_origin"))?;
    WebauthnBuilder::new(&origin.host, &url)
        .map_err(|_| Refused("webauthn_bad_origin"))?
        .rp_name("Sekisho")
        .allow_subdomains(false)
        .allow_any_port(false)
        .build()
        .map_err(|_| Refused("webauthn_bad_origin"))
}

impl Auth {
    /// Starts a passkey login for the typed name. A name with no passkey gets a decoy
    /// challenge shaped like a real one, so the answer does not tell who exists.
    pub fn webauthn_login_start(
        &self,
        policy: &Policy,
        typed: &str,
        client: &Client,
        origin: &Origin,
    ) -> Result<(String, RequestChallengeResponse), Refused> {
        let rp = relying_party(origin)?;
        let name = names::canonical(typed).unwrap_or_default();
        let passkeys: Vec<Passkey> = self
            .eligible(policy, &name, client)
            .map(|r| passkeys(&r))
            .unwrap_or_default();
        let (challenge, state) = if passkeys.is_empty() {
            (self.decoy_challenge(&name, origin)?, None)
        } else {
            let (rcr, state) = rp
                .start_passkey_authentication(&passkeys)
                .map_err(|_| Refused("webauthn_start_failed"))?;
            (rcr, Some(Box::new(state)))
        };
        let id = self.put_ceremony(&name, client, CEREMONY_TTL, Step::Login { state })?;
        Ok((id, challenge))
    }

    fn decoy_challenge(&self, name: &str, origin: &Origin) -> Result<RequestChallengeResponse, Refused> {
        let challenge = self.key.random(32).ok_or(Refused("no_randomness"))?;
        let fake_id = self.key.mac(&[b"decoy-credential", name.as_bytes()]);
        let json = serde_json::json!({
            "publicKey": {
                "challenge": super::crypto::b64(&challenge),
                "timeout": 300000,
                "rpId": origin.host,
                "allowCredentials": [{"type": "public-key", "id": super::crypto::b64(fake_id.get(..16).unwrap_or(&fake_id))}],
                "userVerification": "required"
            }
        });
        serde_json::from_value(json).map_err(|_| Refused("webauthn_start_failed"))
    }

    /// Finishes a passkey login: the ceremony is taken (once), then the assertion checked.
    pub fn webauthn_login_finish(
        &self,
        policy: &Policy,
        ceremony_id: &str,
        answer: &PublicKeyCredential,
        client: &Client,
        origin: &Origin,
    ) -> Result<super::NewSession, Refused> {
        let cer = self.take_ceremony_of(ceremony_id, client)?;
        let name = cer.user.clone();
        let keys = [lockout::user_key(&name), lockout::addr_key(client.ip)];
        if lockout::is_locked(self.store(), &keys, self.now())? {
            return Err(Refused("locked_out"));
        }
        let verdict = self.check_assertion(policy, &cer, answer, client, origin);
        self.conclude(policy, &name, &keys, verdict, Factor::Webauthn, client)
    }

    fn check_assertion(
        &self,
        policy: &Policy,
        cer: &Ceremony,
        answer: &PublicKeyCredential,
        client: &Client,
        origin: &Origin,
    ) -> Result<(), Refused> {
        let Step::Login { state } = &cer.step else {
            return Err(Refused("ceremony_wrong_kind"));
        };
        self.eligible(policy, &cer.user, client)?;
        let Some(state) = state else {
            return Err(Refused("webauthn_no_passkey"));
        };
        let rp = relying_party(origin)?;
        let result = match rp.finish_passkey_authentication(answer, state) {
            Ok(r) => r,
            Err(WebauthnError::CredentialPossibleCompromise) => return Err(self.counter_alert(policy, &cer.user)),
            Err(e) => {
                tracing::info!(user = %cer.user, error = %e, "assertion refused");
                return Err(Refused("webauthn_assertion_invalid"));
            }
        };
        if !result.user_verified() {
            return Err(Refused("webauthn_no_user_verification"));
        }
        // The ceremony state holds the counter as it was when the ceremony began; compare
        // with the counter stored now (another login may have moved it since), and keep
        // the new one, in one atomic update.
        let update = records::update(self.store(), &cer.user, |r| {
            for f in &mut r.factors {
                if let FactorKind::Webauthn { passkey } = &mut f.kind
                    && passkey.cred_id() == result.cred_id()
                {
                    let stored = stored_counter(passkey);
                    if (result.counter() > 0 || stored > 0) && result.counter() <= stored {
                        return Err(Refused("webauthn_counter_regression"));
                    }
                    passkey.update_credential(&result);
                    return Ok(());
                }
            }
            Err(Refused("webauthn_credential_removed"))
        });
        match update {
            Err(Refused("webauthn_counter_regression")) => Err(self.counter_alert(policy, &cer.user)),
            other => other,
        }
    }

    fn counter_alert(&self, policy: &Policy, user: &str) -> Refused {
        tracing::error!(user = %user, "ALERT: a passkey's signature counter did not increase (cloned authenticator?); login refused");
        self.notices.send(
            policy,
            super::notify::Notice::CounterRegression { user: user.to_owned() },
        );
        Refused("webauthn_counter_regression")
    }

    /// Starts registering a passkey under an open enrolment.
    pub fn webauthn_enrol_start(
        &self,
        enrol_id: &str,
        client: &Client,
        origin: &Origin,
    ) -> Result<(String, CreationChallengeResponse), Refused> {
        let (cer, _) = self.get_ceremony(enrol_id, client)?;
        if !matches!(cer.step, Step::Enrol { .. }) {
            return Err(Refused("ceremony_wrong_kind"));
        }
        let rp = relying_party(origin)?;
        let rec = records::update(self.store(), &cer.user, |r| {
            if r.handle.is_empty() {
                r.handle = super::crypto::b64(&self.key.random(16).ok_or(Refused("no_randomness"))?);
            }
            Ok::<_, Refused>(r.clone())
        })?;
        let handle = super::crypto::unb64(&rec.handle)
            .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
            .map(Uuid::from_bytes)
            .ok_or(Refused("user_handle_unreadable"))?;
        let exclude = passkeys(&rec).iter().map(|p| p.cred_id().clone()).collect::<Vec<_>>();
        let (ccr, state) = rp
            .start_passkey_registration(handle, &cer.user, &cer.user, Some(exclude))
            .map_err(|_| Refused("webauthn_start_failed"))?;
        let id = self.put_ceremony(
            &cer.user,
            client,
            CEREMONY_TTL,
            Step::Register {
                enrol_id: enrol_id.to_owned(),
                state: Box::new(state),
            },
        )?;
        Ok((id, ccr))
    }

    /// Finishes registering a passkey: the registration state and then the enrolment are
    /// taken out of the store (once each), the passkey is stored and a session begins.
    pub fn webauthn_enrol_finish(
        &self,
        policy: &Policy,
        reg_id: &str,
        answer: &RegisterPublicKeyCredential,
        client: &Client,
        origin: &Origin,
    ) -> Result<super::NewSession, Refused> {
        let cer = self.take_ceremony_of(reg_id, client)?;
        let Step::Register { enrol_id, state } = &cer.step else {
            return Err(Refused("ceremony_wrong_kind"));
        };
        let rp = relying_party(origin)?;
        let passkey = rp.finish_passkey_registration(answer, state).map_err(|e| {
            tracing::info!(user = %cer.user, error = %e, "passkey registration refused");
            Refused("webauthn_registration_invalid")
        })?;
        if self.credential_taken(&passkey)? {
            return Err(Refused("webauthn_credential_already_registered"));
        }
        self.get_ceremony(enrol_id, client)?;
        self.take_ceremony(enrol_id)?;
        self.add_factor(
            policy,
            &cer.user,
            FactorKind::Webauthn {
                passkey: Box::new(passkey),
            },
        )?;
        let keys = [lockout::user_key(&cer.user), lockout::addr_key(client.ip)];
        self.conclude(policy, &cer.user, &keys, Ok(()), Factor::Webauthn, client)
    }

    fn credential_taken(&self, passkey: &Passkey) -> Result<bool, Refused> {
        for (_, v) in self.store().scan_prefix(crate::store::Tree::Users, b"")? {
            if let Ok(r) = serde_json::from_slice::<records::UserRecord>(&v)
                && passkeys(&r).iter().any(|p| p.cred_id() == passkey.cred_id())
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn passkeys(r: &records::UserRecord) -> Vec<Passkey> {
    r.factors
        .iter()
        .filter_map(|f| match &f.kind {
            FactorKind::Webauthn { passkey } => Some((**passkey).clone()),
            FactorKind::Totp { .. } => None,
        })
        .collect()
}

/// The signature counter stored with a passkey (read through its serialised form: the
/// field is only public behind webauthn-rs's `danger-credential-internals`).
fn stored_counter(passkey: &Passkey) -> u32 {
    serde_json::to_value(passkey)
        .ok()
        .and_then(|v| v.pointer("/cred/counter").and_then(serde_json::Value::as_u64))
        .and_then(|c| u32::try_from(c).ok())
        // Unreadable: treat as the highest value, so no assertion passes (fail closed).
        .unwrap_or(u32::MAX)
}
