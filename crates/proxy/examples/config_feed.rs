//! A stand-in operator for running `portico-proxy` by hand (memory, CPU profiles): a
//! plaintext config server that pushes one fixed config to every proxy that connects.
//!
//! The config is the benchmark's shape (crates/bench): `--routes` HTTPRoutes, route `i`
//! matching host `h<i>.example.com`, path prefix `/p<i>/` and header `x-route: r<i>`, all
//! to one backend.
//!
//! ```text
//! cargo run --release -p portico-proxy --example config_feed -- --listen 127.0.0.1:28900
//! portico-proxy --operator http://127.0.0.1:28900 --insecure --admin 127.0.0.1:28902
//! curl -H 'host: h1.example.com' -H 'x-route: r1' http://127.0.0.1:28080/p1/
//! ```

use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context;
use clap::Parser;
use futures::Stream;
use pb::config_discovery_server::{ConfigDiscovery, ConfigDiscoveryServer};
use portico_api::config::v1 as pb;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

#[derive(Debug, Parser)]
struct Args {
    /// Where the config server listens (the proxy's --operator).
    #[arg(long, default_value = "127.0.0.1:28900")]
    listen: SocketAddr,
    /// How many routes the config has.
    #[arg(long, default_value_t = 10)]
    routes: usize,
    /// The proxy's HTTP listener port (on 127.0.0.1).
    #[arg(long, default_value_t = 28080)]
    port: u16,
    /// The backend every route goes to.
    #[arg(long, default_value = "127.0.0.1:19000")]
    backend: SocketAddr,
}

fn route(i: usize) -> pb::Route {
    pb::Route {
        name: format!("bench/r{i}/rule0"),
        route: format!("bench/r{i}"),
        r#match: Some(pb::RouteMatch {
            path: Some(pb::PathMatch {
                kind: pb::path_match::Kind::Prefix as i32,
                value: format!("/p{i}/"),
            }),
            headers: vec![pb::HeaderMatch {
                name: "x-route".to_owned(),
                kind: pb::StringMatchKind::Exact as i32,
                value: format!("r{i}"),
            }],
            ..Default::default()
        }),
        backends: vec![pb::WeightedBackend {
            weight: 1,
            target: Some(pb::weighted_backend::Target::Cluster("be".to_owned())),
            filters: vec![],
        }],
        ..Default::default()
    }
}

fn config(args: &Args) -> pb::Config {
    let virtual_hosts = (0..args.routes)
        .map(|i| pb::VirtualHost {
            name: format!("bench/gw/http/h{i}"),
            hostname: format!("h{i}.example.com"),
            host_routes: vec![pb::HostRoutes {
                hostname: String::new(),
                routes: vec![route(i)],
            }],
            ..Default::default()
        })
        .collect();
    pb::Config {
        version: format!("feed-{}", args.routes),
        listeners: vec![pb::Listener {
            name: "bench/gw/http".to_owned(),
            address: "127.0.0.1".to_owned(),
            port: u32::from(args.port),
            protocol: pb::Protocol::Http as i32,
            virtual_hosts,
            ..Default::default()
        }],
        clusters: vec![pb::Cluster {
            name: "be".to_owned(),
            endpoints: vec![pb::Endpoint {
                address: args.backend.ip().to_string(),
                port: u32::from(args.backend.port()),
                ready: true,
                pod: String::new(),
            }],
            protocol: pb::ClusterProtocol::Http1 as i32,
            tls: None,
        }],
    }
}

#[derive(Debug)]
struct Feed {
    config: pb::Config,
}

type Pushes = Pin<Box<dyn Stream<Item = Result<pb::ConfigPush, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigDiscovery for Feed {
    type StreamConfigStream = Pushes;

    async fn stream_config(
        &self,
        request: Request<Streaming<pb::ProxyMessage>>,
    ) -> Result<Response<Pushes>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(1);
        let push = pb::ConfigPush {
            nonce: 1,
            version: self.config.version.clone(),
            config: Some(self.config.clone()),
            resources: vec![],
        };
        tokio::spawn(async move {
            // The hello, then ACKs: printed, and the stream stays open while the proxy's
            // side does.
            while let Ok(Some(message)) = incoming.message().await {
                if let Some(pb::proxy_message::Kind::Hello(hello)) = &message.kind {
                    eprintln!("config_feed: hello from {}", hello.node);
                    if tx.send(Ok(push.clone())).await.is_err() {
                        break;
                    }
                } else {
                    eprintln!("config_feed: {:?}", message.kind);
                }
            }
        });
        let mut rx = rx;
        Ok(Response::new(Box::pin(futures::stream::poll_fn(
            move |cx| rx.poll_recv(cx),
        ))))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let feed = Feed {
        config: config(&args),
    };
    eprintln!(
        "config_feed: {} routes, listener 127.0.0.1:{}, backend {}, serving on {}",
        args.routes, args.port, args.backend, args.listen
    );
    tonic::transport::Server::builder()
        .add_service(ConfigDiscoveryServer::new(feed))
        .serve(args.listen)
        .await
        .context("config server")?;
    Ok(())
}
