//! Creating and loading the file-backed CA, and every way loading refuses a bad one.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{TestResult, openssl, write};
use hostmesh_ca::store::{self, CaError, ExistingRoot, InitOptions};
use hostmesh_ca::{CaPaths, CertificateAuthority, TrustDomain};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_istio_layout_with_private_keys_0600() -> TestResult {
    let dir = tempfile::tempdir()?;
    let paths = CaPaths::new(dir.path().join("ca"));
    let summary = store::init(&paths, &InitOptions::default(), None)?;
    assert_eq!(summary.written.len(), 5);
    assert_eq!(mode(&paths.ca_key()), 0o600);
    assert_eq!(mode(&paths.root_key()), 0o600);
    assert_eq!(mode(&paths.ca_cert()), 0o644);
    // The signing CA verifies against the root with openssl, and cert-chain.pem is CA + root.
    let out = openssl(&[
        "verify",
        "-CAfile",
        &paths.root_cert().to_string_lossy(),
        &paths.ca_cert().to_string_lossy(),
    ]);
    assert!(out.trim_end().ends_with(": OK"), "{out}");
    let chain = fs::read_to_string(paths.cert_chain())?;
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(chain.starts_with(&fs::read_to_string(paths.ca_cert())?));
    assert!(chain.ends_with(&fs::read_to_string(paths.root_cert())?));
    let text = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        &paths.ca_cert().to_string_lossy(),
    ]);
    assert!(
        text.contains("Public Key Algorithm: id-ecPublicKey"),
        "{text}"
    );
    assert!(text.contains("prime256v1"), "{text}");
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("URI:spiffe://cluster.local"), "{text}");

    let ca = CertificateAuthority::load(&paths, None)?;
    assert_eq!(ca.trust_domain().as_str(), "cluster.local");
    Ok(())
}

#[test]
fn init_refuses_to_overwrite() -> TestResult {
    let dir = tempfile::tempdir()?;
    let paths = CaPaths::new(dir.path());
    store::init(&paths, &InitOptions::default(), None)?;
    let before = fs::read(paths.ca_key())?;
    let err = store::init(&paths, &InitOptions::default(), None).unwrap_err();
    assert!(matches!(err, CaError::AlreadyExists(_)), "{err}");
    assert!(
        err.to_string()
            .ends_with("a CA already exists here; refusing to overwrite it")
    );
    assert_eq!(fs::read(paths.ca_key())?, before);
    Ok(())
}

#[test]
fn init_under_an_existing_root() -> TestResult {
    let dir = tempfile::tempdir()?;
    // An operator's existing root, made by openssl (as Istio's tooling does).
    let root_key = dir.path().join("root-key.pem");
    let root_cert = dir.path().join("root-cert.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "365",
        "-subj",
        "/O=Istio/CN=Root CA",
        "-keyout",
        &root_key.to_string_lossy(),
        "-out",
        &root_cert.to_string_lossy(),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    fs::set_permissions(&root_key, fs::Permissions::from_mode(0o600))?;
    let paths = CaPaths::new(dir.path().join("ca"));
    let existing = ExistingRoot {
        cert_path: root_cert.clone(),
        key_path: root_key,
    };
    let summary = store::init(&paths, &InitOptions::default(), Some(&existing))?;
    assert!(summary.root_key.is_none());
    assert!(!paths.root_key().exists());
    assert_eq!(fs::read(paths.root_cert())?, fs::read(&root_cert)?);
    let out = openssl(&[
        "verify",
        "-CAfile",
        &root_cert.to_string_lossy(),
        &paths.ca_cert().to_string_lossy(),
    ]);
    assert!(out.trim_end().ends_with(": OK"), "{out}");
    CertificateAuthority::load(&paths, None)?;
    Ok(())
}

#[test]
fn load_refuses_world_readable_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let paths = CaPaths::new(dir.path());
    store::init(&paths, &InitOptions::default(), None)?;
    fs::set_permissions(paths.ca_key(), fs::Permissions::from_mode(0o644))?;
    let err = CertificateAuthority::load(&paths, None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}: private key is readable by group or others (mode 0644); run `chmod 600 {}`",
            paths.ca_key().display(),
            paths.ca_key().display()
        )
    );
    Ok(())
}

#[test]
fn load_refuses_key_that_does_not_match() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = CaPaths::new(dir.path().join("a"));
    let b = CaPaths::new(dir.path().join("b"));
    store::init(&a, &InitOptions::default(), None)?;
    store::init(&b, &InitOptions::default(), None)?;
    fs::copy(b.ca_key(), a.ca_key())?;
    let err = CertificateAuthority::load(&a, None).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("the private key does not match the certificate")
    );
    Ok(())
}

#[test]
fn load_refuses_chain_that_does_not_lead_to_the_root() -> TestResult {
    let dir = tempfile::tempdir()?;
    let a = CaPaths::new(dir.path().join("a"));
    let b = CaPaths::new(dir.path().join("b"));
    store::init(&a, &InitOptions::default(), None)?;
    store::init(&b, &InitOptions::default(), None)?;
    // a's signing CA, but b's root.
    fs::copy(b.root_cert(), a.root_cert())?;
    fs::write(a.cert_chain(), fs::read(a.ca_cert())?)?;
    let err = CertificateAuthority::load(&a, None).unwrap_err();
    assert!(matches!(err, CaError::BrokenChain { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("the chain does not lead to a root in"),
        "{err}"
    );
    Ok(())
}

#[test]
fn load_refuses_expired_ca() -> TestResult {
    let dir = tempfile::tempdir()?;
    let paths = CaPaths::new(dir.path().join("ca"));
    // A CA whose validity ended in the past.
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key)?;
    write(dir.path(), "c", &cert.pem());
    let key = write(dir.path(), "k", &key.serialize_pem());
    fs::create_dir(&paths.dir)?;
    for target in [paths.ca_cert(), paths.cert_chain(), paths.root_cert()] {
        fs::copy(dir.path().join("c"), target)?;
    }
    fs::copy(&key, paths.ca_key())?;
    fs::set_permissions(paths.ca_key(), fs::Permissions::from_mode(0o600))?;
    let err = CertificateAuthority::load(&paths, None).unwrap_err();
    assert!(
        matches!(
            err,
            CaError::Validity {
                state: "has expired",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("has expired (valid 2020-01-01"),
        "{err}"
    );
    Ok(())
}

#[test]
fn load_refuses_other_trust_domain() -> TestResult {
    let dir = tempfile::tempdir()?;
    let paths = CaPaths::new(dir.path());
    let options = InitOptions {
        trust_domain: TrustDomain::new("example.org")?,
        ca_ttl: Duration::from_secs(3600),
        ..InitOptions::default()
    };
    store::init(&paths, &options, None)?;
    let ca = CertificateAuthority::load(&paths, None)?;
    assert_eq!(ca.trust_domain().as_str(), "example.org");
    let err = CertificateAuthority::load(&paths, Some(&TrustDomain::default())).unwrap_err();
    assert!(matches!(err, CaError::TrustDomainMismatch { .. }), "{err}");
    Ok(())
}
