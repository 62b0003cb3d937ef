//! Certificates made by the `openssl` command line in a temp dir, for TLS tests: a root CA and
//! an intermediate, server leaves signed by the intermediate (with SANs), a leaf that expired,
//! a second unrelated CA, client certificates. Nothing here is committed: every run makes new
//! keys.
//!
//! Every key is P-256 (fast to make). A server's `chain` file is its leaf followed by the
//! intermediate, as a pod serves it; clients trust `root.pem` only.
//!
//! Tests first call [`available`]: where `openssl` is missing they are skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// Whether the `openssl` command runs; if not, marks `test` skipped.
pub fn available(test: &str) -> bool {
    let runs = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        super::skip(test, "openssl not installed (apt-get install openssl)");
    }
    runs
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf alone.
    pub cert: PathBuf,
    /// The leaf then the intermediate that signed it (for a server to send).
    pub chain: PathBuf,
    pub key: PathBuf,
}

/// A throwaway PKI in a temp dir.
pub struct Pki {
    dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("openssl {args:?}: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const CA_EXT: &str = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n";

impl Pki {
    /// A root CA (`root.pem`) and an intermediate it signed (`intermediate.pem`); a second,
    /// unrelated root (`other-root.pem`).
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("headway-pki-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        let pki = Pki { dir };
        pki.root("root");
        pki.root("other-root");
        pki.write("ca.ext", CA_EXT);
        pki.key("intermediate");
        openssl(
            pki.dir(),
            &[
                "req",
                "-new",
                "-key",
                "intermediate.key",
                "-subj",
                "/CN=headway test intermediate",
                "-out",
                "intermediate.csr",
            ],
        );
        openssl(
            pki.dir(),
            &[
                "x509",
                "-req",
                "-in",
                "intermediate.csr",
                "-CA",
                "root.pem",
                "-CAkey",
                "root.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-extfile",
                "ca.ext",
                "-out",
                "intermediate.pem",
            ],
        );
        pki
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file of the PKI's dir, by name (`root.pem`, `other-root.pem`, `intermediate.pem`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }

    fn key(&self, name: &str) {
        let key = format!("{name}.key");
        openssl(
            self.dir(),
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
        );
    }

    fn root(&self, name: &str) {
        self.key(name);
        let (key, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("/CN=headway test {name}"),
        );
        openssl(
            self.dir(),
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &key,
                "-subj",
                &subj,
                "-days",
                "30",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                &pem,
            ],
        );
    }

    /// A server leaf `name` for the DNS names `sans`, signed by the intermediate (valid now
    /// for 30 days).
    pub fn server(&self, name: &str, sans: &[&str]) -> Issued {
        self.leaf(name, sans, "serverAuth", "intermediate", None)
    }

    /// A server leaf that expired (valid during two days of 2020), signed by the intermediate.
    pub fn expired_server(&self, name: &str, sans: &[&str]) -> Issued {
        self.leaf(
            name,
            sans,
            "serverAuth",
            "intermediate",
            Some(("20200101000000Z", "20200103000000Z")),
        )
    }

    /// A server leaf signed by the other, unrelated root.
    pub fn foreign_server(&self, name: &str, sans: &[&str]) -> Issued {
        self.leaf(name, sans, "serverAuth", "other-root", None)
    }

    /// A client certificate `name`, signed by the root.
    pub fn client(&self, name: &str) -> Issued {
        self.leaf(name, &[], "clientAuth", "root", None)
    }

    /// A leaf signed by `issuer` (`intermediate`, `root`, `other-root`); `dates`: its validity
    /// (`openssl ca -startdate/-enddate`, which OpenSSL 3.0's `x509 -req` lacks), else 30 days
    /// from now.
    fn leaf(
        &self,
        name: &str,
        sans: &[&str],
        usage: &str,
        issuer: &str,
        dates: Option<(&str, &str)>,
    ) -> Issued {
        self.key(name);
        let mut ext = format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\nauthorityKeyIdentifier=keyid\n"
        );
        if !sans.is_empty() {
            let names: Vec<String> = sans.iter().map(|s| format!("DNS:{s}")).collect();
            ext.push_str(&format!("subjectAltName={}\n", names.join(",")));
        }
        let ext_file = format!("{name}.ext");
        self.write(&ext_file, &ext);
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let subj = format!("/CN={}", sans.first().copied().unwrap_or(name));
        openssl(
            self.dir(),
            &["req", "-new", "-key", &key, "-subj", &subj, "-out", &csr],
        );
        let (issuer_pem, issuer_key) = (format!("{issuer}.pem"), format!("{issuer}.key"));
        match dates {
            None => openssl(
                self.dir(),
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &issuer_pem,
                    "-CAkey",
                    &issuer_key,
                    "-CAcreateserial",
                    "-days",
                    "30",
                    "-extfile",
                    &ext_file,
                    "-out",
                    &pem,
                ],
            ),
            Some((start, end)) => {
                let db = format!("{name}.index");
                self.write(&db, "");
                self.write(&format!("{name}.serial"), "1000\n");
                let conf = format!(
                    "[ca]\ndefault_ca=ca\n[ca]\ndatabase={db}\nserial={name}.serial\nnew_certs_dir=.\n\
                     default_md=sha256\npolicy=any\nunique_subject=no\ncopy_extensions=none\n\
                     [any]\ncommonName=supplied\n[ext]\n{ext}"
                );
                self.write(&format!("{name}.cnf"), &conf);
                openssl(
                    self.dir(),
                    &[
                        "ca",
                        "-batch",
                        "-config",
                        &format!("{name}.cnf"),
                        "-cert",
                        &issuer_pem,
                        "-keyfile",
                        &issuer_key,
                        "-in",
                        &csr,
                        "-out",
                        &pem,
                        "-notext",
                        "-extensions",
                        "ext",
                        "-startdate",
                        start,
                        "-enddate",
                        end,
                    ],
                );
            }
        }
        let chain = format!("{name}.chain.pem");
        let read = |name: &str| {
            std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
        };
        let mut text = read(&pem);
        if issuer == "intermediate" {
            text.push_str(&read("intermediate.pem"));
        }
        self.write(&chain, &text);
        Issued {
            cert: self.path(&pem),
            chain: self.path(&chain),
            key: self.path(&key),
        }
    }
}
