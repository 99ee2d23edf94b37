//! Certificates generated at test time with rcgen (issue 14): a test CA, a
//! server certificate for `localhost`/`127.0.0.1`, the three certificates
//! every TLS client must refuse (signed by another CA, expired, issued for
//! another host), and a client certificate for mutual TLS. All ECDSA P-256.

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A PEM certificate chain file and its key file.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// Every file of the test PKI, in one folder.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The folder.
    pub dir: PathBuf,
    /// The CA that signs `server`, `expired`, `wrong_host` and `client`.
    pub ca: PathBuf,
    /// A CA that signed none of them (the "wrong CA").
    pub other_ca: PathBuf,
    /// Valid for `localhost` and `127.0.0.1`.
    pub server: Pair,
    /// Valid for `localhost` and `127.0.0.1`, signed by `other_ca`.
    pub untrusted: Pair,
    /// Valid for `localhost` and `127.0.0.1`, but expired in 2021.
    pub expired: Pair,
    /// Valid only for `other.invalid`.
    pub wrong_host: Pair,
    /// A client certificate (mutual TLS), CN `terminus-test-client`.
    pub client: Pair,
}

const MAIN_CA: &str = "Terminus test CA";

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    CertifiedIssuer::self_signed(ca_params(name), KeyPair::generate().expect("CA key"))
        .expect("CA cert")
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    issuer: &CertifiedIssuer<'static, KeyPair>,
    adjust: impl FnOnce(&mut CertificateParams),
) -> Pair {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, sans.first().copied().unwrap_or(name));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    adjust(&mut params);
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("leaf cert");
    let pair = Pair {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&pair.cert, cert.pem()).expect("write cert");
    std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
    pair
}

/// A leaf certificate for `sans` signed by the CA of `pki`, written as
/// `name.crt`/`name.key` in its folder (the reload test rotates with it).
pub fn issue(pki: &TestPki, name: &str, sans: &[&str]) -> Pair {
    let ca_key = std::fs::read_to_string(pki.dir.join("ca.key")).expect("CA key");
    let key = KeyPair::from_pem(&ca_key).expect("CA key parses");
    // The same subject and key as the CA certificate: what a chain needs.
    let issuer = rcgen::Issuer::new(ca_params(MAIN_CA), key);
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, &issuer).expect("leaf cert");
    let pair = Pair {
        cert: pki.dir.join(format!("{name}.crt")),
        key: pki.dir.join(format!("{name}.key")),
    };
    std::fs::write(&pair.cert, cert.pem()).expect("write cert");
    std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
    pair
}

/// Generates the whole test PKI into `dir` (created if missing).
pub fn generate(dir: &Path) -> TestPki {
    std::fs::create_dir_all(dir).expect("create the PKI folder");
    let main = ca(MAIN_CA);
    let other = ca("Terminus other CA");
    std::fs::write(dir.join("ca.crt"), main.pem()).expect("write CA");
    std::fs::write(dir.join("ca.key"), main.key().serialize_pem()).expect("write CA key");
    std::fs::write(dir.join("other-ca.crt"), other.pem()).expect("write other CA");
    let here = ["localhost", "127.0.0.1"];
    let server = leaf(dir, "server", &here, &main, |_| {});
    let untrusted = leaf(dir, "untrusted", &here, &other, |_| {});
    let expired = leaf(dir, "expired", &here, &main, |p| {
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2021, 1, 1);
    });
    let wrong_host = leaf(dir, "wrong-host", &["other.invalid"], &main, |_| {});
    let client = leaf(dir, "client", &["terminus-test-client"], &main, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    TestPki {
        dir: dir.to_path_buf(),
        ca: dir.join("ca.crt"),
        other_ca: dir.join("other-ca.crt"),
        server,
        untrusted,
        expired,
        wrong_host,
        client,
    }
}

/// A fresh PKI in a new temporary folder named after `test`.
pub fn temp_pki(test: &str) -> TestPki {
    let dir = std::env::temp_dir().join(format!(
        "terminus-pki-{test}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    generate(&dir)
}
