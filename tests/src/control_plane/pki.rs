//! Self-made credentials of a test control plane, made with the `openssl` command: a CA and a
//! serving certificate for kube-apiserver (127.0.0.1 and localhost), the service-account key
//! pair, and a static token file with one admin in `system:masters`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Error;

/// The files kube-apiserver is started with, and what a client needs to talk to it.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The CA certificate that signed the serving certificate (PEM).
    pub ca_cert: PathBuf,
    /// kube-apiserver's serving certificate (PEM).
    pub serving_cert: PathBuf,
    /// Its private key (PEM).
    pub serving_key: PathBuf,
    /// The service-account signing key (PEM, RSA).
    pub service_account_key: PathBuf,
    /// Its public half.
    pub service_account_pub: PathBuf,
    /// The static token file (`token,user,uid,"groups"`).
    pub token_file: PathBuf,
    /// The admin's bearer token.
    pub admin_token: String,
}

impl Pki {
    /// Makes every file in `dir` (which must exist).
    pub fn create(dir: &Path) -> Result<Self, Error> {
        let path = |name: &str| dir.join(name);
        let ca_key = path("ca.key");
        let ca_cert = path("ca.pem");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=bao-kms-test-ca",
            "-keyout",
            s(&ca_key)?,
            "-out",
            s(&ca_cert)?,
        ])?;
        let serving_key = path("apiserver.key");
        let csr = path("apiserver.csr");
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=kube-apiserver",
            "-keyout",
            s(&serving_key)?,
            "-out",
            s(&csr)?,
        ])?;
        let extensions = path("apiserver.ext");
        fs::write(
            &extensions,
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n\
             extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n",
        )
        .map_err(|error| Error::io("write apiserver.ext", error))?;
        let serving_cert = path("apiserver.pem");
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr)?,
            "-CA",
            s(&ca_cert)?,
            "-CAkey",
            s(&ca_key)?,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            s(&extensions)?,
            "-out",
            s(&serving_cert)?,
        ])?;
        let service_account_key = path("sa.key");
        let service_account_pub = path("sa.pub");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            s(&service_account_key)?,
        ])?;
        openssl(&[
            "pkey",
            "-in",
            s(&service_account_key)?,
            "-pubout",
            "-out",
            s(&service_account_pub)?,
        ])?;
        let admin_token = random_token()?;
        let token_file = path("tokens.csv");
        fs::write(
            &token_file,
            format!("{admin_token},admin,admin-uid,\"system:masters\"\n"),
        )
        .map_err(|error| Error::io("write tokens.csv", error))?;
        Ok(Self {
            ca_cert,
            serving_cert,
            serving_key,
            service_account_key,
            service_account_pub,
            token_file,
            admin_token,
        })
    }
}

fn s(path: &Path) -> Result<&str, Error> {
    path.to_str()
        .ok_or_else(|| Error::Setup(format!("path {} is not UTF-8", path.display())))
}

fn openssl(args: &[&str]) -> Result<(), Error> {
    let output = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| Error::io("run openssl (is it installed?)", error))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "openssl {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// 32 random bytes as hex.
fn random_token() -> Result<String, Error> {
    let mut bytes = [0_u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut bytes))
        .map_err(|error| Error::io("read /dev/urandom", error))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}
