//! Logging with `tracing`: text for people, JSON lines for CloudWatch. `RUST_LOG` filters; on
//! Lambda without it, the level the template's `LoggingConfig.ApplicationLogLevel` gives
//! (Lambda passes it as `AWS_LAMBDA_LOG_LEVEL`); else `info`.

use tracing_subscriber::EnvFilter;

/// Set by Lambda from `LoggingConfig.ApplicationLogLevel` (TRACE … FATAL).
pub const LAMBDA_LOG_LEVEL: &str = "AWS_LAMBDA_LOG_LEVEL";

fn lambda_level() -> Option<EnvFilter> {
    let level = std::env::var(LAMBDA_LOG_LEVEL).ok()?.to_ascii_lowercase();
    let level = if level == "fatal" {
        "error".to_owned()
    } else {
        level
    };
    EnvFilter::try_new(level).ok()
}

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .ok()
        .or_else(lambda_level)
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = if json {
        // A panic (the API answers it with a 500, the runtime with an error) is reported as one
        // JSON line like every other, not as the default hook's plain text.
        std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panicked")));
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
