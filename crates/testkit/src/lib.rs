//! portico-testkit: helpers for component and whole-binary tests of the other crates.
//! Never shipped.
//!
//! ```text
//! eventually(timeout, || async { ... })     retry until Ok/Some, fail with the last error
//! EchoBackend::start(pod, ns, svc)          in-process portico-echo on 127.0.0.1:0
//! Process::spawn(bin, args)                 child process, stdout/stderr captured as lines,
//!   .wait_for_line / .wait_for_listen_addr  killed on drop, SIGINT + bounded wait
//! HttpClient::http1(addr) / ::h2c(addr)     hyper client pinned to one address, any Host
//! get / get_json(target, host, path)        one-shot GET with a bounded time
//! free_port()                               a port that was free a moment ago
//! write_file(dir, name, contents)           atomic write (temp file + rename)
//! metrics::check_documented(component, t)   a /metrics scrape against docs/metrics.md
//! next_proxy_port(client, gateway, port)    the proxy port the operator will give a new
//!                                           Gateway's listener (ProxyPorts)
//! otlp::Collector::start()                  OTLP/HTTP collector on 127.0.0.1:0 (--otlp-endpoint)
//!   .spans() / otlp::attribute(span, key)   what it received, span by span
//! PodNetwork::create()                     netns + veth, pod addresses 10.244.K.x (root)
//!   .allocate() / .command(program)        an address per pod; run a program inside
//! apiserver::TestApiServer::start()          in-memory Kubernetes API server on 127.0.0.1:0
//!   .client() / .kubeconfig(path)           a kube::Client, or a kubeconfig for processes
//!   .apply_crds_from(dir) / .compact()      register CRDs; force 410 Gone on old watches
//! ```
//!
//! The rules these helpers serve (`e2e/README.md`): no fixed ports, no sleeps where an
//! eventually loop works, no environment mutation, every loop bounded in count and time.

pub mod apiserver;
mod echo;
mod eventually;
mod fs;
mod http;
pub mod metrics;
mod net;
mod netns;
pub mod otlp;
mod process;
mod proxy_port;

pub use echo::EchoBackend;
pub use eventually::{Attempt, EventuallyError, eventually};
pub use fs::write_file;
pub use http::{DEFAULT_HTTP_TIMEOUT, HttpClient, HttpError, get, get_json};
pub use net::free_port;
pub use netns::{NetnsError, PodNetwork};
pub use process::{Line, Process, ProcessError, Stream};
pub use proxy_port::{ProxyPortError, next_proxy_port};
