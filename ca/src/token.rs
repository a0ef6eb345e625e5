//! Join tokens: the credential a host presents for its first certificate.
//!
//! A token is `hmjt1.<claims>.<mac>`: base64url JSON claims (a random id, the namespace and
//! service account it allows, its expiry) and an HMAC-SHA256 over them with a key kept on the
//! control server (`join-token.key`, mode 0600). A token allows exactly one first certificate:
//! the ids of used tokens are appended (and fsynced) to `used-join-tokens` before the
//! certificate is returned, so a restart does not make a token usable again. Entries are
//! dropped once their token has expired, when the file is next loaded.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{constant_time, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::files::{self, FileError, SECRET_MODE};
use crate::identity::{IdentityError, SpiffeId, TrustDomain};

const PREFIX: &str = "hmjt1";

/// Why a join token was refused. The text is what the caller sees.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the join token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the join token was not issued by this control server (signature mismatch)")]
    BadSignature,
    #[error(
        "the join token expired at {}; create a new one with `hostmesh-control token create`", rfc3339(*.0)
    )]
    Expired(u64),
    #[error(
        "the join token was already used at {}; a token allows one first certificate only", rfc3339(*.0)
    )]
    AlreadyUsed(u64),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: {reason}")]
    Store { path: PathBuf, reason: String },
}

/// What a valid token allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub id: String,
    #[serde(rename = "ns")]
    pub namespace: String,
    #[serde(rename = "sa")]
    pub service_account: String,
    /// Expiry, unix seconds.
    #[serde(rename = "exp")]
    pub expires: u64,
}

impl TokenClaims {
    pub fn identity(&self, trust_domain: &TrustDomain) -> Result<SpiffeId, IdentityError> {
        SpiffeId::new(trust_domain.clone(), &self.namespace, &self.service_account)
    }
}

/// The secret that signs and verifies tokens.
pub struct TokenKey(hmac::Key);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// Loads the key at `path`, creating it (0600) if it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, TokenError> {
        if !path.exists() {
            let secret: [u8; 32] = rand::random();
            if let Some(dir) = path.parent() {
                files::create_dir(dir, 0o700)?;
            }
            files::write_atomic(path, B64.encode(secret).as_bytes(), SECRET_MODE)?;
        }
        let text = files::read_secret(path)?;
        let secret = B64
            .decode(text.trim_ascii())
            .ok()
            .filter(|s| s.len() >= 32)
            .ok_or_else(|| TokenError::Store {
                path: path.to_owned(),
                reason: "not a join token key (expected 32 base64url bytes)".into(),
            })?;
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &secret)))
    }

    /// Makes a token for `namespace`/`service_account` that expires after `ttl`.
    pub fn create(&self, id: &SpiffeId, ttl: Duration) -> String {
        let token_id: [u8; 16] = rand::random();
        let claims = TokenClaims {
            id: token_id.iter().map(|b| format!("{b:02x}")).collect(),
            namespace: id.namespace().to_owned(),
            service_account: id.service_account().to_owned(),
            expires: unix_now() + ttl.as_secs(),
        };
        // Serialising a struct of strings and a number cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let body = format!("{PREFIX}.{}", B64.encode(json));
        let mac = hmac::sign(&self.0, body.as_bytes());
        format!("{body}.{}", B64.encode(mac.as_ref()))
    }

    /// Checks a token's signature and expiry (not whether it was used: see [`UsedTokens`]).
    pub fn verify(&self, token: &str, now: u64) -> Result<TokenClaims, TokenError> {
        let token = token.trim();
        let (body, mac) = token
            .rsplit_once('.')
            .ok_or(TokenError::Malformed("expected hmjt1.<claims>.<mac>"))?;
        let claims_b64 = body
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or(TokenError::Malformed("it does not start with hmjt1."))?;
        let mac = B64
            .decode(mac)
            .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
        let expected = hmac::sign(&self.0, body.as_bytes());
        constant_time::verify_slices_are_equal(expected.as_ref(), &mac)
            .map_err(|_| TokenError::BadSignature)?;
        let json = B64
            .decode(claims_b64)
            .map_err(|_| TokenError::Malformed("the claims are not base64url"))?;
        let claims: TokenClaims = serde_json::from_slice(&json)
            .map_err(|_| TokenError::Malformed("the claims are not the expected JSON"))?;
        if now >= claims.expires {
            return Err(TokenError::Expired(claims.expires));
        }
        Ok(claims)
    }
}

/// The durable record of tokens that were spent.
#[derive(Debug)]
pub struct UsedTokens {
    path: PathBuf,
    /// token id → (expiry, when it was used)
    used: Mutex<HashMap<String, (u64, u64)>>,
}

impl UsedTokens {
    /// Loads the record at `path` (missing means none used), dropping expired entries.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let mut used = HashMap::new();
        if path.exists() {
            let text = String::from_utf8(files::read(path)?).map_err(|_| TokenError::Store {
                path: path.to_owned(),
                reason: "not UTF-8".into(),
            })?;
            let now = unix_now();
            for (n, line) in text.lines().enumerate() {
                let mut fields = line.split_ascii_whitespace();
                let parsed = (|| {
                    let id = fields.next()?.to_owned();
                    let expires = fields.next()?.parse().ok()?;
                    let at = fields.next()?.parse().ok()?;
                    Some((id, expires, at))
                })();
                let Some((id, expires, at)) = parsed else {
                    return Err(TokenError::Store {
                        path: path.to_owned(),
                        reason: format!("line {}: expected `<id> <expiry> <used-at>`", n + 1),
                    });
                };
                if expires > now {
                    used.insert(id, (expires, at));
                }
            }
            let compacted: String = used
                .iter()
                .map(|(id, (exp, at))| format!("{id} {exp} {at}\n"))
                .collect();
            files::write_atomic(path, compacted.as_bytes(), SECRET_MODE)?;
        }
        Ok(Self {
            path: path.to_owned(),
            used: Mutex::new(used),
        })
    }

    /// Marks the token spent, durably, or says when it already was.
    pub fn consume(&self, claims: &TokenClaims) -> Result<(), TokenError> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, at)) = used.get(&claims.id) {
            return Err(TokenError::AlreadyUsed(*at));
        }
        let now = unix_now();
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(SECRET_MODE)
            .open(&self.path)
            .map_err(|e| FileError::io(&self.path, e))?;
        file.write_all(format!("{} {} {now}\n", claims.id, claims.expires).as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| FileError::io(&self.path, e))?;
        used.insert(claims.id.clone(), (claims.expires, now));
        Ok(())
    }
}

fn rfc3339(unix: u64) -> String {
    let t = i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok());
    match t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    }) {
        Some(text) => text,
        None => format!("unix time {unix}"),
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SpiffeId {
        SpiffeId::new(TrustDomain::default(), "demo", "front").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn token_round_trip_and_refusals() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let key = TokenKey::load_or_create(&dir.path().join("join-token.key"))?;
        let token = key.create(&id(), Duration::from_secs(60));
        let claims = key.verify(&token, unix_now())?;
        assert_eq!(
            (claims.namespace.as_str(), claims.service_account.as_str()),
            ("demo", "front")
        );

        let expired = key.verify(&token, claims.expires);
        assert!(matches!(expired, Err(TokenError::Expired(e)) if e == claims.expires));

        // Another control server's key does not verify it.
        let other = TokenKey::load_or_create(&dir.path().join("other.key"))?;
        assert!(matches!(
            other.verify(&token, unix_now()),
            Err(TokenError::BadSignature)
        ));

        // Changing the claims breaks the signature.
        let (_, rest) = token.split_once('.').unwrap_or_default();
        let (_, mac) = rest.split_once('.').unwrap_or_default();
        let forged_claims = B64.encode(serde_json::to_vec(&TokenClaims {
            namespace: "kube-system".into(),
            ..claims
        })?);
        let forged = format!("{PREFIX}.{forged_claims}.{mac}");
        assert!(matches!(
            key.verify(&forged, unix_now()),
            Err(TokenError::BadSignature)
        ));
        assert!(matches!(
            key.verify("garbage", unix_now()),
            Err(TokenError::Malformed(_))
        ));
        Ok(())
    }

    #[test]
    fn used_tokens_survive_a_reload() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let key = TokenKey::load_or_create(&dir.path().join("join-token.key"))?;
        let path = dir.path().join("used-join-tokens");
        let claims = key.verify(&key.create(&id(), Duration::from_secs(60)), unix_now())?;
        let used = UsedTokens::load(&path)?;
        used.consume(&claims)?;
        assert!(matches!(
            used.consume(&claims),
            Err(TokenError::AlreadyUsed(_))
        ));
        let reloaded = UsedTokens::load(&path)?;
        assert!(matches!(
            reloaded.consume(&claims),
            Err(TokenError::AlreadyUsed(_))
        ));
        Ok(())
    }
}
