//! What a `kubernetes.io/tls` Secret holds, checked: the chain and key parse, the key
//! belongs to the leaf certificate (the translator's own check, so cert-sync and the
//! operator's InvalidCertificateRef agree), and the leaf is not expired. The leaf's
//! notAfter is read whenever it parses, even when something else is wrong, so that the
//! expiry gauge shows it.

use portico_api::k8s::Secret;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The keys of a `kubernetes.io/tls` Secret.
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The leaf certificate's notAfter, in seconds since the Unix epoch.
    pub not_after: Option<i64>,
    /// Why the Secret cannot serve as a listener certificate, if it cannot.
    pub problem: Option<String>,
}

/// Checks the certificate in `secret` as of `now` (seconds since the Unix epoch).
pub fn inspect(secret: &Secret, now: i64) -> Inspection {
    let data = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
            .filter(|b| !b.is_empty())
    };
    let (Some(chain), Some(key)) = (data(TLS_CRT), data(TLS_KEY)) else {
        return Inspection {
            not_after: data(TLS_CRT).and_then(leaf_not_after),
            problem: Some(format!("needs both {TLS_CRT:?} and {TLS_KEY:?}")),
        };
    };
    let not_after = leaf_not_after(chain);
    let problem = match portico_translate::check_certificate(chain, key) {
        Err(why) => Some(why),
        Ok(()) => match not_after {
            None => Some(format!("{TLS_CRT}: the leaf certificate does not parse")),
            Some(t) if t <= now => Some(format!("the certificate expired at {}", rfc3339(t))),
            Some(_) => None,
        },
    };
    Inspection { not_after, problem }
}

/// The notAfter of the first certificate of a PEM chain.
fn leaf_not_after(chain_pem: &[u8]) -> Option<i64> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// A Unix time as RFC 3339, for messages.
pub fn rfc3339(unix: i64) -> String {
    u64::try_from(unix)
        .ok()
        .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
        .map_or_else(
            || format!("{unix}s since the epoch"),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        )
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portico_api::k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    /// A certificate for `name` valid from 2020 until `not_after` (Unix seconds), and its
    /// key, as PEM.
    pub(crate) fn mk_pem(name: &str, not_after: i64) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1)
            + std::time::Duration::from_secs(u64::try_from(not_after).unwrap());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub(crate) fn mk_tls_secret(ns: &str, name: &str, crt: &str, key: &str) -> Secret {
        let mut data = BTreeMap::new();
        data.insert(TLS_CRT.to_owned(), ByteString(crt.as_bytes().to_vec()));
        data.insert(TLS_KEY.to_owned(), ByteString(key.as_bytes().to_vec()));
        Secret {
            metadata: portico_api::k8s::ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_valid_certificate_and_its_expiry() {
        let (crt, key) = mk_pem("web.example", NOW + 86_400);
        let i = inspect(&mk_tls_secret("a", "s", &crt, &key), NOW);
        assert_eq!(
            i,
            Inspection {
                not_after: Some(NOW + 86_400),
                problem: None
            }
        );
    }

    #[test]
    fn expired_mismatched_and_garbage() {
        let (crt, key) = mk_pem("web.example", NOW - 10);
        let i = inspect(&mk_tls_secret("a", "s", &crt, &key), NOW);
        assert_eq!(i.not_after, Some(NOW - 10));
        assert!(i.problem.unwrap().contains("expired"));

        let (_, other_key) = mk_pem("other.example", NOW + 10);
        let i = inspect(&mk_tls_secret("a", "s", &crt, &other_key), NOW);
        assert_eq!(
            i.not_after,
            Some(NOW - 10),
            "notAfter read despite the problem"
        );
        assert!(i.problem.unwrap().contains("do not make a certificate"));

        let i = inspect(&mk_tls_secret("a", "s", "junk", "junk"), NOW);
        assert_eq!(i.not_after, None);
        assert!(i.problem.is_some());

        let mut missing = mk_tls_secret("a", "s", &crt, &key);
        missing.data.as_mut().unwrap().remove(TLS_KEY);
        assert!(inspect(&missing, NOW).problem.unwrap().contains("tls.key"));
    }
}
