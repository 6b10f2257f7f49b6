//! Authentication (docs/api.md): off unless static tokens or a JWT secret are configured;
//! then `Authorization: Bearer <token>` must be one of the static tokens (compared in constant
//! time) or an HS256 JWT signed with the secret that carries a `user_id` claim.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::error::json_error;
use crate::secret::SecretString;

/// How far `exp` and `nbf` may be off, for clocks that differ between issuer and API.
pub const JWT_LEEWAY_SECONDS: u64 = 30;

/// The configured credentials.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    tokens: Vec<SecretString>,
    jwt: Option<(DecodingKey, Validation)>,
}

#[derive(Deserialize)]
struct Claims {
    user_id: serde_json::Value,
}

impl Auth {
    /// From the flags; empty tokens are ignored.
    pub fn new(tokens: &[SecretString], jwt_secret: Option<&SecretString>) -> Self {
        let tokens = tokens.iter().filter(|t| !t.is_empty()).cloned().collect();
        let jwt = jwt_secret.filter(|s| !s.is_empty()).map(|s| {
            let mut v = Validation::new(Algorithm::HS256);
            // Airy Core's tokens need not expire; `exp` and `nbf` are checked when present, with
            // a little leeway for clocks that differ.
            v.required_spec_claims.clear();
            v.validate_exp = true;
            v.validate_nbf = true;
            v.leeway = JWT_LEEWAY_SECONDS;
            (DecodingKey::from_secret(s.expose().as_bytes()), v)
        });
        Auth {
            inner: Arc::new(AuthInner { tokens, jwt }),
        }
    }

    /// Whether any credential is configured.
    pub fn enabled(&self) -> bool {
        !self.inner.tokens.is_empty() || self.inner.jwt.is_some()
    }

    /// Whether the request's Authorization header is acceptable.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if !self.enabled() {
            return true;
        }
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
        else {
            return false;
        };
        self.token_ok(token)
    }

    fn token_ok(&self, token: &str) -> bool {
        // Check every static token, so the time taken does not tell which one matched.
        let mut ok = subtle::Choice::from(0u8);
        for t in &self.inner.tokens {
            ok |= t.expose().as_bytes().ct_eq(token.as_bytes());
        }
        if bool::from(ok) {
            return true;
        }
        match &self.inner.jwt {
            Some((key, validation)) => jsonwebtoken::decode::<Claims>(token, key, validation)
                .map(|d| match d.claims.user_id {
                    serde_json::Value::String(s) => !s.is_empty(),
                    serde_json::Value::Number(_) => true,
                    _ => false,
                })
                .unwrap_or(false),
            None => false,
        }
    }
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Middleware answering 403 (also on `/metrics` of the API port when auth is on) `{"message"}` for requests without acceptable credentials.
pub async fn require_auth(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    if auth.allows(req.headers()) {
        next.run(req).await
    } else {
        json_error(
            StatusCode::FORBIDDEN,
            "forbidden: a valid Authorization: Bearer token is required",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    fn jwt(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn off_without_configuration() {
        let a = Auth::new(&[], None);
        assert!(!a.enabled());
        assert!(a.allows(&HeaderMap::new()));
    }

    #[test]
    fn static_tokens() {
        let a = Auth::new(
            &[SecretString::new("tok-1"), SecretString::new("tok-2")],
            None,
        );
        assert!(a.allows(&headers("Bearer tok-2")));
        assert!(a.allows(&headers("bearer tok-1")));
        assert!(!a.allows(&headers("Bearer tok-3")));
        assert!(!a.allows(&headers("Bearer tok-")));
        assert!(!a.allows(&headers("tok-1")));
        assert!(!a.allows(&HeaderMap::new()));
    }

    #[test]
    fn jwts() {
        let a = Auth::new(&[], Some(&SecretString::new("s3cret")));
        let good = jwt("s3cret", serde_json::json!({"user_id": "u1"}));
        assert!(a.allows(&headers(&format!("Bearer {good}"))));
        let wrong_key = jwt("other", serde_json::json!({"user_id": "u1"}));
        assert!(!a.allows(&headers(&format!("Bearer {wrong_key}"))));
        let no_user = jwt("s3cret", serde_json::json!({"sub": "u1"}));
        assert!(!a.allows(&headers(&format!("Bearer {no_user}"))));
        let expired = jwt(
            "s3cret",
            serde_json::json!({"user_id": "u1", "exp": 1_000_000}),
        );
        assert!(!a.allows(&headers(&format!("Bearer {expired}"))));
        let future = jwt(
            "s3cret",
            serde_json::json!({"user_id": "u1", "exp": 4_000_000_000u64}),
        );
        assert!(a.allows(&headers(&format!("Bearer {future}"))));
        let now = jsonwebtoken::get_current_timestamp();
        let not_yet = jwt(
            "s3cret",
            serde_json::json!({"user_id": "u1", "nbf": now + 3600}),
        );
        assert!(!a.allows(&headers(&format!("Bearer {not_yet}"))));
        let in_leeway = jwt(
            "s3cret",
            serde_json::json!({"user_id": "u1", "nbf": now + JWT_LEEWAY_SECONDS / 2}),
        );
        assert!(a.allows(&headers(&format!("Bearer {in_leeway}"))));
    }
}
