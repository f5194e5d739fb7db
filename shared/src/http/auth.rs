//! Who may call the API: every GraphQL request presents the API token, as Skylark clients do
//! (`Authorization: Bearer <token>`), or in `x-api-key`. A request without it, or with another
//! token, is answered 401 `UnauthorizedException` before its body is read, so it reaches no
//! resolver, store or queue.
//!
//! The token is compared in constant time: both sides are hashed (SHA-256) and the digests
//! compared with `subtle`, so neither the content nor the length of the expected token shows in
//! the time a refusal takes.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::json;
use crate::graphql::ErrorType;

/// The second header a token may come in (AppSync's and API Gateway's name for an API key).
pub const API_KEY_HEADER: &str = "x-api-key";

/// The token requests must present, kept only as its SHA-256 digest.
#[derive(Clone)]
pub struct ApiToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the API token is empty")]
    Empty,
    #[error("the API token may hold only visible ASCII characters (no spaces)")]
    Characters,
    #[error("the API token could not be read: {0}")]
    Unavailable(String),
}

impl ApiToken {
    /// A token as configured; it must be sendable in a header: visible ASCII, no spaces.
    pub fn new(token: &str) -> Result<Self, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Characters);
        }
        Ok(ApiToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is this token, in time independent of both.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.ct_eq(&self.digest).into()
    }
}

/// Where the expected token comes from: fixed (local, tests) or a secret store that may rotate it.
#[async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(&self) -> Result<ApiToken, TokenError>;
}

#[async_trait]
impl TokenSource for ApiToken {
    async fn token(&self) -> Result<ApiToken, TokenError> {
        Ok(self.clone())
    }
}

/// Whether the API asks for a token. `Off` only for `skylark-local` on loopback.
#[derive(Clone)]
pub enum Auth {
    Off,
    Token(Arc<dyn TokenSource>),
}

impl Auth {
    pub fn token(token: ApiToken) -> Self {
        Auth::Token(Arc::new(token))
    }
}

/// The credential a request presents, or why it presents none usable.
fn presented(headers: &HeaderMap) -> Result<&[u8], &'static str> {
    let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
    if let Some(value) = authorization.next() {
        if authorization.next().is_some() {
            return Err("send one Authorization header");
        }
        let value = value.as_bytes().trim_ascii();
        let (scheme, token) = match value.iter().position(|b| *b == b' ') {
            Some(at) => (&value[..at], value[at + 1..].trim_ascii()),
            None => (value, &b""[..]),
        };
        // Written exactly `Bearer`, as Skylark documents it and as issue 7's acceptance asks
        // (the right token under `bearer` is a 401), though RFC 9110 §11.1 lets schemes be
        // compared without case: one spelling is one thing to check, and the message says it.
        if scheme != b"Bearer" {
            return Err(if scheme.eq_ignore_ascii_case(b"bearer") {
                "write the scheme `Bearer`, with a capital B and the rest in lower case"
            } else {
                "the Authorization header must be `Bearer <token>`"
            });
        }
        if token.is_empty() {
            return Err("the Authorization header has no token after `Bearer`");
        }
        return Ok(token);
    }
    let mut api_key = headers.get_all(API_KEY_HEADER).iter();
    match (api_key.next(), api_key.next()) {
        (Some(_), Some(_)) => Err("send one x-api-key header"),
        (Some(value), None) if !value.as_bytes().trim_ascii().is_empty() => {
            Ok(value.as_bytes().trim_ascii())
        }
        (Some(_), None) => Err("the x-api-key header is empty"),
        (None, _) => Err(
            "this API needs a token: send `Authorization: Bearer <token>` or `x-api-key: <token>`",
        ),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = json(
        StatusCode::UNAUTHORIZED,
        &ErrorType::UnauthorizedException.body(message),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"skylark-tasks\""),
    );
    response
}

/// Middleware: lets the request through only with the right token.
pub async fn require_token(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let Auth::Token(source) = &auth else {
        return next.run(request).await;
    };
    let presented = match presented(request.headers()) {
        Ok(token) => token,
        Err(reason) => {
            tracing::info!(reason, "request refused: no usable token");
            return unauthorized(reason);
        }
    };
    let expected = match source.token().await {
        Ok(token) => token,
        Err(e) => {
            // Our fault, not the client's: the secret could not be read.
            tracing::error!(error = %e, "the API token is unavailable");
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                &ErrorType::InternalFailure.body("the service cannot check tokens right now"),
            );
        }
    };
    if !expected.matches(presented) {
        tracing::info!("request refused: wrong token");
        return unauthorized("the token is not valid for this API");
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        map
    }

    #[test]
    fn tokens_match_only_themselves() {
        let token = ApiToken::new("s3cret-Token").expect("token");
        assert!(token.matches(b"s3cret-Token"));
        assert!(!token.matches(b"s3cret-token"));
        assert!(!token.matches(b"s3cret-Token "));
        assert!(!token.matches(b""));
        assert!(matches!(ApiToken::new(""), Err(TokenError::Empty)));
        assert!(matches!(ApiToken::new("a b"), Err(TokenError::Characters)));
        assert!(matches!(ApiToken::new("é"), Err(TokenError::Characters)));
        assert_eq!(format!("{token:?}"), "ApiToken(..)");
    }

    #[test]
    fn the_credential_comes_from_bearer_or_x_api_key() {
        let ok = |pairs: &[(&str, &str)]| presented(&headers(pairs)).map(<[u8]>::to_vec);
        assert_eq!(ok(&[("authorization", "Bearer abc")]), Ok(b"abc".to_vec()));
        assert_eq!(
            ok(&[("authorization", "Bearer  abc ")]),
            Ok(b"abc".to_vec())
        );
        assert_eq!(ok(&[("x-api-key", "abc")]), Ok(b"abc".to_vec()));
        // Authorization wins over x-api-key when both are sent.
        assert_eq!(
            ok(&[("authorization", "Bearer abc"), ("x-api-key", "def")]),
            Ok(b"abc".to_vec())
        );
        for refused in [
            &[][..],
            &[("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")],
            &[("authorization", "Bearer")],
            &[("authorization", "bearer abc")],
            &[("authorization", "BEARER abc")],
            &[("authorization", "Bearer   ")],
            &[("authorization", "abc")],
            &[("authorization", "Bearer a"), ("authorization", "Bearer a")],
            &[("x-api-key", " ")],
            &[("x-api-key", "a"), ("x-api-key", "a")],
        ] {
            assert!(ok(refused).is_err(), "{refused:?}");
        }
    }
}
