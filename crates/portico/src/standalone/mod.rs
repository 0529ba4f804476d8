//! `portico standalone DIR`: the file provider, the translator and the proxy in one
//! process, with no cluster.
//!
//! ```text
//!  DIR ──notify (debounced)──> FileProvider ──Inputs──> translate ──Config──> proxy ──> backends
//!                                   │                       │
//!                                   └── load errors ───┐    └── statuses
//!                                                      v        v
//!                                                  report (stdout: listeners, routes, curl)
//! ```
//!
//! The same translator runs in the operator; here its statuses are printed instead of
//! written to an API server. A change to the folder is translated and swapped into the
//! running proxy; a file that does not parse keeps its last good objects, so a typo never
//! takes a working route away.

mod curl;
mod report;
mod statuses;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portico_operator::{FileProvider, ProviderEvent, WatchError};
use portico_proxy::{ProxyHandle, ProxyOptions};
use portico_translate::{Options, translate};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use report::Report;

/// How standalone mode runs.
#[derive(Clone, Debug)]
pub struct StandaloneConfig {
    /// The folder of Kubernetes YAML to serve.
    pub dir: PathBuf,
    /// Where listeners of Gateways without `spec.addresses` bind.
    pub default_address: IpAddr,
    /// How long the folder must be quiet before a change is applied.
    pub debounce: Duration,
    pub proxy: ProxyOptions,
}

/// Where standalone mode writes what a user should read (stdout in the binary, a buffer in
/// tests).
pub type Output = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("cannot watch {dir}: {source}")]
    Provider {
        dir: PathBuf,
        #[source]
        source: WatchError,
    },
    #[error("cannot start the proxy: {0}")]
    Proxy(#[from] portico_proxy::ProxyError),
}

/// A running standalone instance.
#[derive(Debug)]
pub struct Standalone {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    bound: BTreeMap<String, SocketAddr>,
}

impl Standalone {
    /// Loads the folder, starts the proxy on the translated config and keeps following
    /// the folder until [`Standalone::shutdown`].
    pub async fn start(config: StandaloneConfig, out: Output) -> Result<Self, StandaloneError> {
        let cancel = CancellationToken::new();
        let watching = FileProvider::watch(&config.dir, config.debounce, cancel.clone())
            .await
            .map_err(|source| StandaloneError::Provider {
                dir: config.dir.clone(),
                source,
            })?;
        let initial = watching.initial;
        let options = Options {
            default_address: config.default_address,
            ..Options::default()
        };

        let output = translate(&initial.inputs, &options);
        let proxy = portico_proxy::start(config.proxy.clone(), output.config.clone()).await?;
        let bound = proxy.bound_addrs();
        let report = Report::new(&output, &problems(&initial, &proxy), &bound, None);
        out(&report.to_string());

        let task = tokio::spawn(follow(
            proxy,
            watching.updates,
            options,
            report,
            out,
            cancel.clone(),
        ));
        Ok(Self {
            cancel,
            task,
            bound,
        })
    }

    /// The address of each listener, by listener name, as bound at start-up.
    pub fn bound_addrs(&self) -> &BTreeMap<String, SocketAddr> {
        &self.bound
    }

    /// Stops watching, lets requests in flight finish and closes the listeners.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "standalone task ended abnormally");
        }
    }
}

/// Applies every change of the folder to the proxy until cancelled.
async fn follow(
    proxy: ProxyHandle,
    mut updates: watch::Receiver<ProviderEvent>,
    options: Options,
    mut last: Report,
    out: Output,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            changed = updates.changed() => if changed.is_err() { break },
        }
        let event = updates.borrow_and_update().clone();
        let output = translate(&event.inputs, &options);
        if output.config.version != proxy.version()
            && let Err(error) = proxy.update(output.config.clone()).await
        {
            out(&format!(
                "config {} rejected, still serving {}: {error}",
                output.config.version,
                proxy.version()
            ));
            continue;
        }
        let report = Report::new(
            &output,
            &problems(&event, &proxy),
            &proxy.bound_addrs(),
            Some(&last),
        );
        let text = report.to_string();
        if !text.is_empty() {
            out(&text);
        }
        last = report;
    }
    proxy.shutdown().await;
}

/// What the user must fix: files that did not load and listeners that could not bind.
fn problems(event: &ProviderEvent, proxy: &ProxyHandle) -> Vec<String> {
    let files = event.errors.iter().map(ToString::to_string);
    let listeners = proxy.listener_errors().into_iter().map(|e| e.to_string());
    files.chain(listeners).collect()
}
