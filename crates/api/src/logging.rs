//! How every Portico binary logs: one setup, `--log-format text|json` (env
//! `PORTICO_LOG_FORMAT`), and a dedicated target for the proxy's access log.
//!
//! ```text
//! tracing events ──┬─ target != portico::access ─> EnvFilter (--log) ─> text | json ─> stdout or stderr
//!                  └─ target == portico::access ─> INFO (or --log if it names the target)
//!                                                  ─> always JSON, one line per request ─> stdout
//! ```
//!
//! The access log is JSON whatever `--log-format` says: it is data for a log pipeline,
//! not messages for a person, and a pipeline should not have to parse two formats. It is
//! on by default; `--log 'info,portico::access=off'` turns it off process-wide (any
//! `--log` that names `portico::access` takes over its level), and a Gateway turns off
//! its own lines with the `portico.dev/access-log: "off"` annotation.
//!
//! [`init`] needs the `logging` feature; the target constant does not, so that the
//! proxy can emit on it without pulling the subscriber in.

/// The tracing target of the proxy's access log: one event per request.
pub const ACCESS_LOG_TARGET: &str = "portico::access";

/// The environment variable behind every binary's `--log-format`.
pub const LOG_FORMAT_ENV: &str = "PORTICO_LOG_FORMAT";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's default format).
    #[default]
    Text,
    /// One JSON object per line, fields flattened into the object.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Where the ordinary log lines go. Binaries whose stdout is data (the CLI's reports,
/// the echo's `listening on` line) log to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogStream {
    #[default]
    Stdout,
    Stderr,
}

#[cfg(feature = "logging")]
pub use setup::{BoxLayer, LoggingError, access_layer, init, init_with};

#[cfg(feature = "logging")]
mod setup {
    use std::io::IsTerminal;

    use tracing_subscriber::{
        EnvFilter, Layer, Registry,
        filter::{LevelFilter, Targets},
        fmt::{self, MakeWriter, writer::BoxMakeWriter},
        layer::SubscriberExt,
        util::SubscriberInitExt,
    };

    use super::{ACCESS_LOG_TARGET, LogFormat, LogStream};

    #[derive(Debug, thiserror::Error)]
    pub enum LoggingError {
        #[error("log filter {filter:?}: {error}")]
        Filter {
            filter: String,
            #[source]
            error: tracing_subscriber::filter::ParseError,
        },
        #[error("a global logger is already installed: {0}")]
        Installed(#[from] tracing_subscriber::util::TryInitError),
    }

    /// A layer of the process-wide subscriber.
    pub type BoxLayer = Box<dyn Layer<Registry> + Send + Sync>;

    /// Installs the process-wide subscriber: `filter` (EnvFilter syntax) and `format`
    /// for ordinary lines on `stream`, and, with `access_log`, the access log as JSON
    /// on stdout (see the module docs).
    pub fn init(
        filter: &str,
        format: LogFormat,
        stream: LogStream,
        access_log: bool,
    ) -> Result<(), LoggingError> {
        init_with(filter, format, stream, access_log, Vec::new())
    }

    /// [`init`] plus `extra` layers, which filter for themselves (e.g. the OTLP span
    /// export, `crate::otlp::SpanLayer`): `filter` does not apply to them.
    pub fn init_with(
        filter: &str,
        format: LogFormat,
        stream: LogStream,
        access_log: bool,
        extra: Vec<BoxLayer>,
    ) -> Result<(), LoggingError> {
        let parse = |filter: &str| {
            EnvFilter::try_new(filter).map_err(|error| LoggingError::Filter {
                filter: filter.to_owned(),
                error,
            })
        };
        // The access target never reaches the ordinary lines: the more specific
        // directive wins over whatever `filter` says about `portico`.
        let ordinary =
            parse(filter)?.add_directive(format!("{ACCESS_LOG_TARGET}=off").parse().map_err(
                |error| LoggingError::Filter {
                    filter: ACCESS_LOG_TARGET.to_owned(),
                    error,
                },
            )?);
        let (writer, ansi) = match stream {
            LogStream::Stdout => (
                BoxMakeWriter::new(std::io::stdout),
                std::io::stdout().is_terminal(),
            ),
            LogStream::Stderr => (
                BoxMakeWriter::new(std::io::stderr),
                std::io::stderr().is_terminal(),
            ),
        };
        let ordinary: BoxLayer = match format {
            LogFormat::Text => fmt::layer()
                .with_writer(writer)
                .with_ansi(ansi)
                .with_filter(ordinary)
                .boxed(),
            LogFormat::Json => fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(writer)
                .with_filter(ordinary)
                .boxed(),
        };
        let mut layers = vec![ordinary];
        if access_log {
            let layer = if filter.contains(ACCESS_LOG_TARGET) {
                // The operator of the process asked for a level of its own.
                access_layer(std::io::stdout)
                    .with_filter(parse(filter)?)
                    .boxed()
            } else {
                access_layer(std::io::stdout)
            };
            layers.push(layer);
        }
        layers.extend(extra);
        tracing_subscriber::registry().with(layers).try_init()?;
        Ok(())
    }

    /// The access log alone: events of [`ACCESS_LOG_TARGET`] at INFO as one flat JSON
    /// object per line on `writer` (`timestamp`, `level`, `target` and the event's
    /// fields). Public so that tests capture exactly what `init` would print.
    pub fn access_layer<W>(writer: W) -> BoxLayer
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .with_filter(Targets::new().with_target(ACCESS_LOG_TARGET, LevelFilter::INFO))
            .boxed()
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]

        use std::sync::{Arc, Mutex};

        use tracing_subscriber::layer::SubscriberExt;

        use super::*;

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);

        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        #[test]
        fn access_layer_keeps_only_the_access_target_as_flat_json() {
            let buffer = Buffer::default();
            let writer = buffer.clone();
            let subscriber =
                tracing_subscriber::registry().with(access_layer(move || writer.clone()));
            tracing::subscriber::with_default(subscriber, || {
                tracing::info!(target: ACCESS_LOG_TARGET, status = 200u16, route = "ns/r", "request");
                tracing::info!(target: "portico_proxy", "not an access line");
                tracing::debug!(target: ACCESS_LOG_TARGET, "below INFO");
            });
            let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 1, "{text}");
            let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
            assert_eq!(line["status"], 200);
            assert_eq!(line["route"], "ns/r");
            assert_eq!(line["target"], ACCESS_LOG_TARGET);
            assert!(line["timestamp"].is_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogFormat;

    #[test]
    fn log_format_parses_and_prints_its_flag_values() {
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(format.to_string().parse::<LogFormat>(), Ok(format));
        }
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
