//! Which proxy port the operator will give a Gateway's listener, before the Gateway
//! exists: for tests that must hold that port first (a NACK on the proxy's node).

use kube::{Api, Client};
use portico_api::gateway::{Gateway, GatewayClass};
use portico_api::k8s::Time;
use portico_api::k8s_openapi::jiff::Timestamp;
use portico_translate::{Exposure, Inputs, ObjectRef, Options, ProxyPorts};

#[derive(Debug, thiserror::Error)]
pub enum ProxyPortError {
    #[error("listing GatewayClasses and Gateways: {0}")]
    List(#[from] kube::Error),
    #[error("Gateway {gateway} has no listener on port {port}")]
    NoListener { gateway: String, port: u16 },
}

/// The proxy port the operator will give listener port `port` of `gateway` when it is
/// created now (its creation timestamp is set to now), computed as the operator does
/// (`portico_translate::ProxyPorts`, deterministic, behind Services) from the
/// GatewayClasses and Gateways `client` lists plus `gateway`.
pub async fn next_proxy_port(
    client: &Client,
    mut gateway: Gateway,
    port: u16,
) -> Result<u16, ProxyPortError> {
    let classes: Api<GatewayClass> = Api::all(client.clone());
    let gateways: Api<Gateway> = Api::all(client.clone());
    gateway.metadata.creation_timestamp = Some(Time(Timestamp::now()));
    let key = ObjectRef::new(
        gateway.metadata.namespace.clone().unwrap_or_default(),
        gateway.metadata.name.clone().unwrap_or_default(),
    );
    let mut inputs = Inputs {
        gateway_classes: classes.list(&Default::default()).await?.items,
        gateways: gateways.list(&Default::default()).await?.items,
        ..Inputs::default()
    };
    inputs.gateways.push(gateway);
    let options = Options {
        exposure: Exposure::Service,
        ..Options::default()
    };
    ProxyPorts::assign(&inputs, &options)
        .get(&key, port)
        .ok_or_else(|| ProxyPortError::NoListener {
            gateway: key.to_string(),
            port,
        })
}
