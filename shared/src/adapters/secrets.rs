//! The API token kept in AWS Secrets Manager: the secret's string is the token itself (the
//! template generates it). It is read when the API starts — a function that cannot read it does
//! not start — and again once it is older than [`REFRESH_EVERY`], so a rotated token is taken up
//! within minutes without a redeploy. A failed refresh keeps the token in hand and tries again
//! after [`RETRY_AFTER`].

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use tokio::sync::RwLock;

use crate::http::{ApiToken, TokenError, TokenSource};

/// How long a token read from the secret is used before it is read again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// How long after a failed refresh the next one is tried.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

pub struct SecretToken {
    client: Client,
    secret_id: String,
    refresh_every: Duration,
    current: RwLock<(ApiToken, Instant)>,
}

async fn read(client: &Client, secret_id: &str) -> Result<ApiToken, TokenError> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| {
            TokenError::Unavailable(format!(
                "GetSecretValue {secret_id}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
            ))
        })?;
    let text = output.secret_string().ok_or_else(|| {
        TokenError::Unavailable(format!(
            "secret {secret_id} holds no string (binary secret?)"
        ))
    })?;
    ApiToken::new(text)
}

impl SecretToken {
    /// Reads the secret now: an error here means the API cannot check tokens and must not start.
    pub async fn load(client: Client, secret_id: impl Into<String>) -> Result<Self, TokenError> {
        Self::load_with(client, secret_id, REFRESH_EVERY).await
    }

    /// [`SecretToken::load`] with another refresh period (tests).
    pub async fn load_with(
        client: Client,
        secret_id: impl Into<String>,
        refresh_every: Duration,
    ) -> Result<Self, TokenError> {
        let secret_id = secret_id.into();
        let token = read(&client, &secret_id).await?;
        Ok(SecretToken {
            client,
            secret_id,
            refresh_every,
            current: RwLock::new((token, Instant::now() + refresh_every)),
        })
    }
}

#[async_trait]
impl TokenSource for SecretToken {
    async fn token(&self) -> Result<ApiToken, TokenError> {
        {
            let current = self.current.read().await;
            if Instant::now() < current.1 {
                return Ok(current.0.clone());
            }
        }
        let mut current = self.current.write().await;
        // Another request may have refreshed it while this one waited.
        if Instant::now() < current.1 {
            return Ok(current.0.clone());
        }
        match read(&self.client, &self.secret_id).await {
            Ok(token) => *current = (token, Instant::now() + self.refresh_every),
            Err(e) => {
                tracing::warn!(error = %e, "refreshing the API token failed; keeping the one in hand");
                current.1 = Instant::now() + RETRY_AFTER;
            }
        }
        Ok(current.0.clone())
    }
}
