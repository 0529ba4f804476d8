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
//!
//! Two additions serve programs that drive standalone mode (the conformance runner):
//! - an address pool ([`pool`]): Gateways without `spec.addresses` each get a loopback
//!   address of their own, as a LoadBalancer would give them an IP;
//! - [`Standalone::observe`]: every state that went live ([`Observed`]: the snapshot, the
//!   translator's output with the statuses, what failed), so a caller can wait for a
//!   status instead of reading stdout.

mod curl;
pub mod pool;
mod report;
mod statuses;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_operator::{FileProvider, Inputs, LoadError, ProviderEvent, WatchError};
use portico_proxy::{ProxyHandle, ProxyOptions};
use portico_translate::Options;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use pool::AddressPool;
pub use report::Report;

use pool::Assigner;

/// How standalone mode runs.
#[derive(Clone, Debug)]
pub struct StandaloneConfig {
    /// The folder of Kubernetes YAML to serve.
    pub dir: PathBuf,
    /// Where listeners of Gateways without `spec.addresses` bind.
    pub default_address: IpAddr,
    /// How long the folder must be quiet before a change is applied.
    pub debounce: Duration,
    /// Gives each Gateway without `spec.addresses` an address of its own from this
    /// block; `None`: they all bind `default_address`.
    pub address_pool: Option<AddressPool>,
    pub proxy: ProxyOptions,
}

/// One state of standalone mode that went live: the folder's snapshot, what the
/// translator made of it, and what could not be applied.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The generation of the provider event this comes from (1 for the initial load).
    pub generation: u64,
    /// The objects the translator ran on.
    pub inputs: Arc<Inputs>,
    /// Files and objects that did not load (their last good objects, if any, are in
    /// `inputs`).
    pub load_errors: Vec<LoadError>,
    /// The translator's config and statuses.
    pub output: portico_translate::Output,
    /// Why the proxy refused this config, if it did (it then still serves the previous
    /// one).
    pub rejected: Option<String>,
    /// Listeners the proxy could not bind.
    pub listener_errors: Vec<String>,
    /// The address of each bound listener, by listener name.
    pub bound: BTreeMap<String, SocketAddr>,
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
    observed: watch::Receiver<Arc<Observed>>,
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
        let mut translator = Translator {
            options: Options {
                default_address: config.default_address,
                ..Options::default()
            },
            pool: config.address_pool.map(Assigner::new),
            routes: portico_translate::Translator::new(),
        };

        let output = translator.translate(&initial);
        let proxy = portico_proxy::start(config.proxy.clone(), output.config.clone()).await?;
        let bound = proxy.bound_addrs();
        let report = Report::new(&output, &problems(&initial, &proxy), &bound, None);
        out(&report.to_string());
        let (observed_tx, observed) =
            watch::channel(Arc::new(observe(&initial, output, None, &proxy)));

        let task = tokio::spawn(follow(
            proxy,
            watching.updates,
            translator,
            report,
            out,
            observed_tx,
            cancel.clone(),
        ));
        Ok(Self {
            cancel,
            task,
            bound,
            observed,
        })
    }

    /// Every state that goes live from now on, starting with the current one.
    pub fn observe(&self) -> watch::Receiver<Arc<Observed>> {
        self.observed.clone()
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

/// The translator with what standalone mode adds to its options.
#[derive(Debug)]
struct Translator {
    options: Options,
    pool: Option<Assigner>,
    /// Reuses the routes that did not change since the last snapshot.
    routes: portico_translate::Translator,
}

impl Translator {
    fn translate(&mut self, event: &ProviderEvent) -> portico_translate::Output {
        if let Some(pool) = &mut self.pool {
            self.options.assigned_addresses = pool
                .update(
                    &event.inputs.gateway_classes,
                    &event.inputs.gateways,
                    &self.options.controller_name,
                )
                .clone();
        }
        self.routes.translate(&event.inputs, &self.options)
    }
}

fn observe(
    event: &ProviderEvent,
    output: portico_translate::Output,
    rejected: Option<String>,
    proxy: &ProxyHandle,
) -> Observed {
    Observed {
        generation: event.generation,
        inputs: event.inputs.clone(),
        load_errors: event.errors.clone(),
        output,
        rejected,
        listener_errors: proxy
            .listener_errors()
            .into_iter()
            .map(|e| e.to_string())
            .collect(),
        bound: proxy.bound_addrs(),
    }
}

/// Applies every change of the folder to the proxy until cancelled.
async fn follow(
    proxy: ProxyHandle,
    mut updates: watch::Receiver<ProviderEvent>,
    mut translator: Translator,
    mut last: Report,
    out: Output,
    observed: watch::Sender<Arc<Observed>>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            changed = updates.changed() => if changed.is_err() { break },
        }
        let started = Instant::now();
        let event = updates.borrow_and_update().clone();
        let output = translator.translate(&event);
        let translated = started.elapsed();
        let unchanged = output.config.version == proxy.version();
        if !unchanged && let Err(error) = proxy.update(output.config.clone()).await {
            let message = format!(
                "config {} rejected, still serving {}: {error}",
                output.config.version,
                proxy.version()
            );
            out(&message);
            observed.send_replace(Arc::new(observe(&event, output, Some(message), &proxy)));
            continue;
        }
        let report = Report::new(
            &output,
            &problems(&event, &proxy),
            &proxy.bound_addrs(),
            Some(last),
        );
        let applied = started.elapsed();
        let text = report.to_string();
        if !text.is_empty() {
            out(&text);
        }
        last = report;
        let reported = started.elapsed();
        observed.send_replace(Arc::new(observe(&event, output, None, &proxy)));
        debug!(
            generation = event.generation,
            unchanged,
            translate_ms = ms(translated),
            apply_ms = ms(applied - translated),
            report_ms = ms(reported - applied),
            observe_ms = ms(started.elapsed() - reported),
            "standalone: change applied"
        );
    }
    proxy.shutdown().await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What the user must fix: files that did not load and listeners that could not bind.
fn problems(event: &ProviderEvent, proxy: &ProxyHandle) -> Vec<String> {
    let files = event.errors.iter().map(ToString::to_string);
    let listeners = proxy.listener_errors().into_iter().map(|e| e.to_string());
    files.chain(listeners).collect()
}
