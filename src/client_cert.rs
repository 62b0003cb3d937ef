//! What a TLS listener verified of a client's certificate, kept with the connection: the proxy
//! passes it to the backend as `x-forwarded-client-cert` (Envoy's XFCC format) and to filters.

use sha2::{Digest, Sha256};
use std::fmt::Write;
use x509_parser::objects::{oid2abbrev, oid_registry};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

/// A verified client certificate's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// SHA-256 of the leaf's DER, lower-case hex (XFCC `Hash`).
    pub hash: String,
    /// The subject in RFC 2253 form, as Envoy's XFCC has it and `openssl x509 -nameopt RFC2253`
    /// prints it: the last RDN first, `,` between them (XFCC `Subject`).
    pub subject: String,
    /// URI SANs, e.g. a SPIFFE id (XFCC `URI`).
    pub uris: Vec<String>,
    /// DNS SANs (XFCC `DNS`).
    pub dns: Vec<String>,
}

impl ClientCert {
    /// Reads a leaf certificate (DER); None if it does not parse (it was verified already, so
    /// that does not happen with a certificate rustls accepted).
    pub fn from_der(der: &[u8]) -> Option<ClientCert> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let (mut uris, mut dns) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => uris.push((*u).to_owned()),
                    GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                    _ => {}
                }
            }
        }
        let mut hash = String::with_capacity(64);
        for byte in Sha256::digest(der) {
            let _ = write!(hash, "{byte:02x}");
        }
        Some(ClientCert {
            hash,
            subject: rfc2253(cert.subject()),
            uris,
            dns,
        })
    }

    /// One XFCC element: `Hash=…;Subject="…";URI=…;DNS=…` (Envoy's `SANITIZE_SET` with
    /// subject, URI and DNS set). The subject is always quoted; a URI or DNS value holding one
    /// of `,;="` is quoted too, with `"` and `\` escaped, so that a value can never open a
    /// field or element of its own.
    pub fn xfcc(&self) -> String {
        let mut out = format!("Hash={};Subject={}", self.hash, quoted(&self.subject));
        for uri in &self.uris {
            let _ = write!(out, ";URI={}", maybe_quoted(uri));
        }
        for dns in &self.dns {
            let _ = write!(out, ";DNS={}", maybe_quoted(dns));
        }
        out
    }
}

/// A name in RFC 2253 form (RFC 4514's escapes: `,+"\\<>;` and a leading `#` or space).
fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let key = oid2abbrev(attr.attr_type(), oid_registry())
                        .map_or_else(|_| attr.attr_type().to_id_string(), str::to_owned);
                    let value = attr.as_str().unwrap_or_default();
                    let mut escaped = String::with_capacity(value.len());
                    for (i, c) in value.chars().enumerate() {
                        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
                            || (i == 0 && matches!(c, '#' | ' '))
                        {
                            escaped.push('\\');
                        }
                        escaped.push(c);
                    }
                    format!("{key}={escaped}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out.push('"');
    out
}

fn maybe_quoted(value: &str) -> String {
    if value
        .chars()
        .any(|c| matches!(c, ',' | ';' | '=' | '"' | '\\') || c.is_control() || c == ' ')
    {
        quoted(value)
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfcc_quotes_what_could_break_out() {
        let cert = ClientCert {
            hash: "ab12".into(),
            subject: "CN=a\",O=b".into(),
            uris: vec!["spiffe://cluster.local/ns/default/sa/web".into()],
            dns: vec!["a.test".into(), "x;Hash=ff".into()],
        };
        assert_eq!(
            cert.xfcc(),
            "Hash=ab12;Subject=\"CN=a\\\",O=b\";URI=spiffe://cluster.local/ns/default/sa/web;DNS=a.test;DNS=\"x;Hash=ff\""
        );
    }
}
