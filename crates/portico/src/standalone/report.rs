//! What `portico standalone` tells its user: the listeners it serves, the routes it
//! accepted and rejected (with the Gateway API reasons), the files it could not load, and
//! curl commands to try. On a reload only the sections that changed are printed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use portico_api::config::v1::Protocol;
use portico_translate::Output;

use super::curl;

/// One printable snapshot of the standalone state.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    version: String,
    listeners: Vec<String>,
    gateways: Vec<String>,
    routes: Vec<String>,
    errors: Vec<String>,
    curls: Vec<String>,
    /// Set on reloads: the report printed before, to print only what changed.
    previous: Option<Box<Report>>,
}

impl Report {
    pub fn new(
        output: &Output,
        errors: &[String],
        bound: &BTreeMap<String, SocketAddr>,
        previous: Option<Report>,
    ) -> Self {
        let config = &output.config;
        let listeners = config
            .listeners
            .iter()
            .flat_map(|listener| {
                let addr = bound.get(&listener.name).map_or_else(
                    || format!("{} (not bound)", listener.name),
                    ToString::to_string,
                );
                let protocol = protocol_name(listener.protocol());
                listener.virtual_hosts.iter().map(move |vhost| {
                    let host = if vhost.hostname.is_empty() {
                        "any host"
                    } else {
                        &vhost.hostname
                    };
                    format!("{addr:<21} {protocol:<5} {} ({host})", vhost.name)
                })
            })
            .collect();
        let mut routes = Vec::new();
        let mut gateways = Vec::new();
        super::statuses::describe(&output.statuses, &mut gateways, &mut routes);
        Self {
            version: config.version.clone(),
            listeners,
            gateways,
            routes,
            errors: errors.to_vec(),
            curls: curl::suggestions(config, bound),
            previous: previous.map(|mut p| {
                p.previous = None;
                Box::new(p)
            }),
        }
    }
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Http => "HTTP",
        Protocol::Https => "HTTPS",
        Protocol::Tls => "TLS",
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Unspecified => "?",
    }
}

/// A titled list of lines, with what to print when it is empty.
type Section<'a> = (&'static str, &'a [String], &'static str);

impl Report {
    fn sections(&self) -> [Section<'_>; 5] {
        [
            (
                "Listeners",
                &self.listeners,
                "none: no Gateway of class portico with a supported listener",
            ),
            ("Gateways", &self.gateways, "none"),
            ("Routes", &self.routes, "none"),
            ("Errors", &self.errors, "none"),
            ("Try", &self.curls, "nothing to try yet"),
        ]
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prev = self.previous.as_deref();
        let before = prev.map(Report::sections);
        let changed = |i: usize, lines: &[String]| before.as_ref().is_none_or(|b| b[i].1 != lines);
        let sections = self.sections();
        let any_change = sections.iter().enumerate().any(|(i, s)| changed(i, s.1))
            || prev.is_some_and(|p| p.version != self.version);
        if !any_change {
            return Ok(());
        }
        match prev {
            None => writeln!(
                f,
                "portico standalone: serving config {}",
                short(&self.version)
            )?,
            Some(p) => writeln!(
                f,
                "reloaded: config {} (was {})",
                short(&self.version),
                short(&p.version)
            )?,
        }
        for (i, (title, lines, empty)) in sections.into_iter().enumerate() {
            if !changed(i, lines) {
                continue;
            }
            writeln!(f, "{title}:")?;
            if lines.is_empty() {
                writeln!(f, "  {empty}")?;
            }
            for line in lines {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}

fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}
