//! The telemetry section: the log filter and format, validated like every
//! other setting (a typo must not silently fall back to the defaults).

use super::{ConfigError, Env, VarDoc};

pub const VARS: &[VarDoc] = &[
    VarDoc {
        name: "RUST_LOG",
        default: "info",
        help: "log filter (tracing EnvFilter syntax, e.g. info,chronos::access=off)",
    },
    VarDoc {
        name: "LOG_FORMAT",
        default: "text",
        help: "text (logfmt) or json (one JSON object per line)",
    },
];

/// Applied when RUST_LOG is unset: our info, the libraries' warnings.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,hyper=warn";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// A filter that parses (RUST_LOG or [`DEFAULT_FILTER`]).
    pub filter: String,
    pub format: LogFormat,
}

pub fn parse(env: &Env) -> Result<TelemetrySettings, ConfigError> {
    let filter = env
        .get("RUST_LOG")
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| DEFAULT_FILTER.to_string());
    // `EnvFilter::try_new` is lenient about odd directives; the parser
    // used for RUST_LOG itself reports them.
    tracing_subscriber::EnvFilter::builder()
        .parse(&filter)
        .map_err(|e| ConfigError::new("RUST_LOG", format!("not a log filter: {e}")))?;
    let format = match env.get("LOG_FORMAT") {
        None => LogFormat::Text,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("expected text or json, got {v:?}"),
                ));
            }
        },
    };
    Ok(TelemetrySettings { filter, format })
}
