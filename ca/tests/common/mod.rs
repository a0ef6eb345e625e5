//! Helpers shared by the CA's integration tests: a CA in a temp dir, CSRs made by openssl.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hostmesh_ca::store::{self, InitOptions};
use hostmesh_ca::{CaPaths, CertificateAuthority, SpiffeId};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn new_ca(dir: &Path) -> CertificateAuthority {
    let paths = CaPaths::new(dir.join("ca"));
    store::init(&paths, &InitOptions::default(), None).unwrap();
    CertificateAuthority::load(&paths, None).unwrap()
}

pub fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

/// Runs openssl, panicking with its stderr if it fails.
pub fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes a key of the given openssl `-newkey` kind and a CSR asking for `san` (if any).
pub fn openssl_csr(dir: &Path, name: &str, newkey: &[&str], san: Option<&str>) -> String {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let mut args = vec!["req", "-new", "-nodes", "-subj", "/O=ignored/CN=ignored"];
    args.extend_from_slice(newkey);
    let key_s = key.to_string_lossy().into_owned();
    let csr_s = csr.to_string_lossy().into_owned();
    args.extend_from_slice(&["-keyout", &key_s, "-out", &csr_s]);
    let ext;
    if let Some(san) = san {
        ext = format!("subjectAltName=URI:{san}");
        args.extend_from_slice(&["-addext", &ext]);
    }
    openssl(&args);
    std::fs::read_to_string(csr).unwrap()
}

pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}
