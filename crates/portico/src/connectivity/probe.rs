//! `portico connectivity probe`: a client pod's whole job. It waits (bounded) for the
//! first answer, since a Service's endpoints may still be being programmed, then sends
//! the rest and prints one JSON [`Tally`] line: the termination message the test reads.

use std::time::Duration;

use tokio::time::Instant;

use super::ConnectivityError;
use crate::check_split::{Resolve, Tally, Target, TargetSpec, parse_header};

/// Pause between two attempts at the first answer.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// `portico connectivity probe`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// Where to send the requests.
    #[arg(long)]
    pub url: String,
    /// How many requests.
    #[arg(long, default_value_t = 10)]
    pub count: u32,
    /// A request header, Name:value (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Connect to ADDRESS for HOST:PORT (repeatable).
    #[arg(long)]
    pub resolve: Vec<Resolve>,
    /// How long to retry until the first answer.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// How long one request may take.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs the probe: prints the tally; `Ok(false)` when a request failed.
pub(super) async fn run(args: ProbeArgs) -> Result<bool, ConnectivityError> {
    let spec = TargetSpec {
        url: args.url,
        headers: args.headers,
        resolve: args.resolve,
        ca_pem: None,
    };
    let tally = match Target::new(&spec).await {
        Ok(target) => probe(&target, args.count, args.wait, args.timeout).await,
        Err(error) => {
            let mut tally = Tally {
                url: spec.url.clone(),
                ..Tally::default()
            };
            tally.add(Err(error.to_string()));
            tally
        }
    };
    let line = serde_json::to_string(&tally).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    println!("{line}");
    Ok(tally.success())
}

/// The first answer within `wait`, then `count - 1` more requests.
pub(super) async fn probe(target: &Target, count: u32, wait: Duration, timeout: Duration) -> Tally {
    let deadline = Instant::now() + wait;
    let mut tally = Tally {
        url: target.url.clone(),
        ..Tally::default()
    };
    if count == 0 {
        return tally;
    }
    let first = loop {
        match target.backend(timeout).await {
            Ok(backend) => break Ok(backend),
            Err(error) if Instant::now() + RETRY_PAUSE >= deadline => break Err(error),
            Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    };
    tally.add(first);
    let rest = target.tally(count - 1, timeout).await;
    tally.merge(rest);
    tally
}
