//! Certificates made by the `openssl` command line, as an operator's CA would make them: a root,
//! an intermediate, leaves for servers and clients with the SANs asked for, a second unrelated
//! root, an expired leaf (`openssl ca` with a start and end date in the past). Everything is
//! written in a temp dir; nothing is committed. Every key is P-256 (fast to make).
//!
//! [`Pki::in_dir`] makes nothing until asked ([`Pki::root`], [`Pki::intermediate`],
//! [`Pki::leaf`]); [`Pki::new`] is the usual layout in a temp dir of its own — `root.pem`, an
//! `intermediate.pem` it signed, an unrelated `other-root.pem` — with [`Pki::server`] leaves
//! signed by the intermediate (their `chain`: leaf then intermediate, as a pod serves it) and
//! [`Pki::client`] certificates signed by the root.
//!
//! Tests first call [`available`]: without `openssl` they are skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure fails the test

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether the `openssl` command is there; if not, marks `test` skipped.
pub fn available(test: &str) -> bool {
    if Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    super::skip(test, "openssl not installed (apt-get install openssl)");
    false
}

/// The serial of the certificate `openssl s_client` is served by `addr` when it asks for `sni`
/// (None: no SNI); None when the handshake is refused.
pub fn served_serial(addr: SocketAddr, sni: Option<&str>) -> Option<String> {
    let connect = addr.to_string();
    let mut args = vec!["s_client", "-connect", connect.as_str()];
    match sni {
        Some(name) => args.extend(["-servername", name]),
        None => args.push("-noservername"),
    }
    let out = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = out.find("-----BEGIN CERTIFICATE-----")?;
    let end = out[start..].find("-----END CERTIFICATE-----")? + start + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin
        .take()
        .unwrap()
        .write_all(&out.as_bytes()[start..end])
        .unwrap();
    let printed = x509.wait_with_output().unwrap();
    let serial = String::from_utf8_lossy(&printed.stdout);
    Some(serial.trim().trim_start_matches("serial=").to_owned())
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate and its key, PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf alone.
    pub cert: PathBuf,
    /// The leaf then the intermediate that signed it, if one did (what a server sends).
    pub chain: PathBuf,
    pub key: PathBuf,
    /// The serial, as `openssl x509 -serial` prints it (upper-case hex, no colons).
    pub serial: String,
}

impl Issued {
    /// `cert` followed by `also` (a chain: leaf, then intermediate), written to `name`.
    pub fn chain_with(&self, also: &Issued, name: &str) -> PathBuf {
        let path = self.cert.with_file_name(name);
        let mut pem = std::fs::read(&self.cert).unwrap();
        pem.extend(std::fs::read(&also.cert).unwrap());
        std::fs::write(&path, pem).unwrap();
        path
    }
}

/// What a leaf is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

/// A directory of certificates.
pub struct Pki {
    dir: PathBuf,
    /// [`Pki::new`]'s own temp dir, and its CAs: root, intermediate, other root.
    standard: Option<(tempfile::TempDir, Issued, Issued, Issued)>,
}

impl Pki {
    /// A PKI writing into `dir`, with no CA yet.
    pub fn in_dir(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            standard: None,
        }
    }

    /// The usual layout in a temp dir of its own: `root.pem`, `intermediate.pem` (signed by
    /// the root), `other-root.pem` (unrelated).
    pub fn new() -> Pki {
        let temp = tempfile::Builder::new()
            .prefix("headway-pki-")
            .tempdir()
            .unwrap();
        let mut pki = Pki::in_dir(temp.path());
        let root = pki.root("root", "headway test root");
        let inter = pki.intermediate("intermediate", "headway test intermediate", &root);
        let other = pki.root("other-root", "headway test other-root");
        pki.standard = Some((temp, root, inter, other));
        pki
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of the directory, by name (`root.pem`, `other-root.pem`, `intermediate.pem`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn standard(&self) -> (&Issued, &Issued, &Issued) {
        let (_, root, inter, other) = self.standard.as_ref().expect("Pki::new's layout");
        (root, inter, other)
    }

    /// A server leaf `name` for the DNS names `sans` (its CN the first), signed by the
    /// intermediate.
    pub fn server(&self, name: &str, sans: &[&str]) -> Issued {
        let (_, inter, _) = self.standard();
        self.server_by(name, sans, inter, false)
    }

    /// A server leaf valid only in January 2020, signed by the intermediate.
    pub fn expired_server(&self, name: &str, sans: &[&str]) -> Issued {
        let (_, inter, _) = self.standard();
        self.server_by(name, sans, inter, true)
    }

    /// A server leaf signed by the other, unrelated root.
    pub fn foreign_server(&self, name: &str, sans: &[&str]) -> Issued {
        let (_, _, other) = self.standard();
        self.server_by(name, sans, other, false)
    }

    fn server_by(&self, name: &str, sans: &[&str], issuer: &Issued, expired: bool) -> Issued {
        let cn = sans.first().unwrap_or(&name);
        let names: Vec<String> = sans.iter().map(|n| format!("DNS:{n}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        if expired {
            self.expired_leaf(name, cn, &names, Usage::Server, issuer)
        } else {
            self.leaf(name, cn, &names, Usage::Server, issuer)
        }
    }

    /// A client certificate `name`, signed by the root.
    pub fn client(&self, name: &str) -> Issued {
        let (root, _, _) = self.standard();
        self.leaf(name, name, &[], Usage::Client, root)
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn serial_of(&self, cert: &str) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in", cert])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().trim_start_matches("serial=").to_owned()
    }

    /// A self-signed root CA named `cn`, files `<name>.pem` and `<name>.key`.
    pub fn root(&self, name: &str, cn: &str) -> Issued {
        let (cert, key) = (
            self.file(&format!("{name}.pem")),
            self.file(&format!("{name}.key")),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "30",
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let serial = self.serial_of(&cert);
        Issued {
            cert: cert.clone().into(),
            chain: cert.into(),
            key: key.into(),
            serial,
        }
    }

    /// An intermediate CA under `issuer`.
    pub fn intermediate(&self, name: &str, cn: &str, issuer: &Issued) -> Issued {
        let ext =
            "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n";
        self.sign(name, &format!("/CN={cn}"), ext, issuer, None)
    }

    /// A leaf for `sans` (`DNS:a.test`, `URI:spiffe://…`), subject `/CN=<cn>/O=headway tests`.
    pub fn leaf(
        &self,
        name: &str,
        cn: &str,
        sans: &[&str],
        usage: Usage,
        issuer: &Issued,
    ) -> Issued {
        self.sign(
            name,
            &format!("/CN={cn}/O=headway tests"),
            &leaf_ext(sans, usage),
            issuer,
            None,
        )
    }

    /// A leaf valid only in January 2020: expired.
    pub fn expired_leaf(
        &self,
        name: &str,
        cn: &str,
        sans: &[&str],
        usage: Usage,
        issuer: &Issued,
    ) -> Issued {
        let dates = ("20200101000000Z", "20200201000000Z");
        self.sign(
            name,
            &format!("/CN={cn}/O=headway tests"),
            &leaf_ext(sans, usage),
            issuer,
            Some(dates),
        )
    }

    fn sign(
        &self,
        name: &str,
        subj: &str,
        ext: &str,
        issuer: &Issued,
        dates: Option<(&str, &str)>,
    ) -> Issued {
        let (cert, key, csr) = (
            self.file(&format!("{name}.pem")),
            self.file(&format!("{name}.key")),
            self.file(&format!("{name}.csr")),
        );
        let ext_file = self.file(&format!("{name}.ext"));
        std::fs::write(&ext_file, ext).unwrap();
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                subj,
            ],
        );
        let (issuer_cert, issuer_key) = (
            issuer.cert.display().to_string(),
            issuer.key.display().to_string(),
        );
        match dates {
            None => openssl(
                &self.dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &issuer_cert,
                    "-CAkey",
                    &issuer_key,
                    "-CAcreateserial",
                    "-out",
                    &cert,
                    "-days",
                    "20",
                    "-extfile",
                    &ext_file,
                ],
            ),
            Some((start, end)) => {
                // `openssl x509` of OpenSSL 3.0 cannot date a certificate in the past: `openssl
                // ca` can, with a database of its own.
                let db = self.dir.join(format!("{name}-ca"));
                std::fs::create_dir_all(&db).unwrap();
                std::fs::write(db.join("index.txt"), "").unwrap();
                std::fs::write(db.join("serial"), "1000\n").unwrap();
                let conf = format!(
                    "[ca]\ndefault_ca=test\n[test]\ndir={}\ndatabase=$dir/index.txt\nserial=$dir/serial\nnew_certs_dir=$dir\ndefault_md=sha256\npolicy=any\ncopy_extensions=none\n[any]\ncommonName=supplied\norganizationName=optional\n",
                    db.display()
                );
                let conf_file = db.join("ca.conf");
                std::fs::write(&conf_file, conf).unwrap();
                openssl(
                    &self.dir,
                    &[
                        "ca",
                        "-batch",
                        "-config",
                        &conf_file.display().to_string(),
                        "-in",
                        &csr,
                        "-cert",
                        &issuer_cert,
                        "-keyfile",
                        &issuer_key,
                        "-out",
                        &cert,
                        "-startdate",
                        start,
                        "-enddate",
                        end,
                        "-extfile",
                        &ext_file,
                        "-notext",
                    ],
                );
            }
        }
        let serial = self.serial_of(&cert);
        // The chain a server sends: the leaf, then its issuer if that is no root of its own.
        let chain = self.file(&format!("{name}.chain.pem"));
        let mut pem = std::fs::read(&cert).unwrap();
        // A root's `chain` is its own `cert` (made by `root`): a root is never sent.
        if issuer.chain != issuer.cert {
            pem.extend(std::fs::read(&issuer.cert).unwrap());
        }
        std::fs::write(&chain, pem).unwrap();
        Issued {
            cert: cert.into(),
            chain: chain.into(),
            key: key.into(),
            serial,
        }
    }
}

fn leaf_ext(sans: &[&str], usage: Usage) -> String {
    let eku = match usage {
        Usage::Server => "serverAuth",
        Usage::Client => "clientAuth",
    };
    let mut ext = format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={eku}\n");
    if !sans.is_empty() {
        ext.push_str(&format!("subjectAltName={}\n", sans.join(",")));
    }
    ext
}
