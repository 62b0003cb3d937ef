//! The certificate a TLS client gets, chosen by the name it asks for (SNI): an exact name first,
//! then a `*.` name one label up; else the listener's first certificate, or a refusal. The
//! table is swapped whole when the files or the conf change: a handshake sees the old table or
//! the new one, never a mix.

use arc_swap::ArcSwap;
use prometheus::IntCounter;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// The certificates of one listener, by name.
#[derive(Default)]
pub struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// For clients that ask for no name, or one no certificate carries; None: refuse them.
    default: Option<Arc<CertifiedKey>>,
}

impl CertTable {
    /// A table of `certificates` (each with its names), in the conf's order: a name carried by
    /// two certificates goes to the first. `default_to_first`: clients with no or an unknown
    /// name get the first certificate.
    pub fn new(certificates: &[(Arc<CertifiedKey>, Vec<String>)], default_to_first: bool) -> Self {
        let mut table = CertTable {
            default: default_to_first
                .then(|| certificates.first().map(|(k, _)| k.clone()))
                .flatten(),
            ..CertTable::default()
        };
        for (key, names) in certificates {
            for name in names {
                let map = match name.strip_prefix("*.") {
                    Some(parent) => table.wildcard.entry(parent.to_owned()),
                    None => table.exact.entry(name.clone()),
                };
                map.or_insert_with(|| key.clone());
            }
        }
        table
    }

    /// The certificate for `name` (None: no name sent).
    pub fn pick(&self, name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let found = name.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        found.or(self.default.as_ref())
    }
}

/// rustls' certificate resolver over a swappable table.
pub struct SniResolver {
    /// The table handshakes read.
    pub table: ArcSwap<CertTable>,
    /// Handshakes refused for want of a certificate for their name.
    pub refused: IntCounter,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let picked = self.table.load().pick(hello.server_name()).cloned();
        if picked.is_none() {
            self.refused.inc();
        }
        picked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::sign::SigningKey;

    #[derive(Debug)]
    struct NoKey;
    impl SigningKey for NoKey {
        fn choose_scheme(
            &self,
            _: &[rustls::SignatureScheme],
        ) -> Option<Box<dyn rustls::sign::Signer>> {
            None
        }
        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::ECDSA
        }
    }

    fn key() -> Arc<CertifiedKey> {
        Arc::new(CertifiedKey::new(vec![], Arc::new(NoKey)))
    }

    #[test]
    fn exact_names_then_wildcards_then_the_default() {
        let (a, b, c) = (key(), key(), key());
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let certs = vec![
            (a.clone(), names(&["a.example.com"])),
            (b.clone(), names(&["*.example.com", "b.test"])),
            (c.clone(), names(&["a.example.com", "c.example.com"])),
        ];
        let table = CertTable::new(&certs, true);
        let is = |name: Option<&str>, want: &Arc<CertifiedKey>| {
            assert!(Arc::ptr_eq(table.pick(name).unwrap(), want), "{name:?}");
        };
        is(Some("a.example.com"), &a); // the first certificate with the name
        is(Some("A.Example.COM."), &a);
        is(Some("c.example.com"), &c); // exact beats wildcard
        is(Some("x.example.com"), &b);
        is(Some("b.test"), &b);
        is(Some("deep.x.example.com"), &a); // a wildcard covers one label: default
        is(Some("example.com"), &a);
        is(None, &a);
        let refusing = CertTable::new(&certs, false);
        assert!(refusing.pick(Some("other.test")).is_none());
        assert!(refusing.pick(None).is_none());
        assert!(Arc::ptr_eq(
            refusing.pick(Some("x.example.com")).unwrap(),
            &b
        ));
    }
}
