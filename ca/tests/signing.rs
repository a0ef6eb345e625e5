//! Signing CSRs: what a leaf carries, what is refused, checked with openssl where it matters.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use ::time::OffsetDateTime;
use base64::Engine as _;
use common::{TestResult, id, new_ca, openssl, openssl_csr, write};
use hostmesh_ca::csr::{CsrError, KeyKind, VerifiedCsr};
use hostmesh_ca::sign::{SignError, SigningPolicy};
use hostmesh_ca::store::{self, InitOptions};
use hostmesh_ca::workload::new_key_and_csr;
use hostmesh_ca::{CaPaths, CertificateAuthority};
use x509_parser::prelude::*;

const BILL: &str = "spiffe://cluster.local/ns/demo/sa/bill-service";

fn leaf_der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

#[test]
fn issued_chain_verifies_with_openssl_and_carries_exactly_the_allowed_identity() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ca = new_ca(dir.path());
    let (_, csr) = new_key_and_csr(&id(BILL))?;
    let chain = ca.sign(
        &VerifiedCsr::from_pem(&csr)?,
        &id(BILL),
        None,
        &SigningPolicy::default(),
    )?;
    assert_eq!(chain.chain_pem.len(), 3, "leaf + signing CA + root");
    let paths = CaPaths::new(dir.path().join("ca"));
    assert_eq!(
        chain.chain_pem[1..].concat(),
        std::fs::read_to_string(paths.cert_chain())?
    );

    let leaf = write(dir.path(), "leaf.pem", &chain.chain_pem[0]);
    let untrusted = write(dir.path(), "untrusted.pem", &chain.chain_pem[1]);
    for purpose in ["sslclient", "sslserver"] {
        let out = openssl(&[
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            &paths.root_cert().to_string_lossy(),
            "-untrusted",
            &untrusted.to_string_lossy(),
            &leaf.to_string_lossy(),
        ]);
        assert!(out.trim_end().ends_with(": OK"), "{out}");
    }

    let der = leaf_der(&chain.chain_pem[0]);
    let (_, cert) = X509Certificate::from_der(&der)?;
    assert!(
        cert.subject().iter_attributes().next().is_none(),
        "subject must be empty"
    );
    let san = cert.subject_alternative_name()?.unwrap();
    assert!(san.critical, "SAN must be critical with an empty subject");
    assert_eq!(san.value.general_names, vec![GeneralName::URI(BILL)]);
    let eku = cert.extended_key_usage()?.unwrap().value;
    assert!(eku.server_auth && eku.client_auth && !eku.any && eku.other.is_empty());
    assert!(!cert.is_ca());
    // A random 128-bit serial: 16 bytes, or 17 with DER's sign byte.
    assert!(
        matches!(cert.raw_serial().len(), 16 | 17),
        "{:?}",
        cert.raw_serial()
    );
    let lifetime = cert.validity().not_after.to_datetime() - OffsetDateTime::now_utc();
    assert!((lifetime - ::time::Duration::hours(24)).abs() < ::time::Duration::seconds(5));
    Ok(())
}

#[test]
fn serials_differ_for_the_same_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ca = new_ca(dir.path());
    let (_, csr) = new_key_and_csr(&id(BILL))?;
    let csr = VerifiedCsr::from_pem(&csr)?;
    let serial = |pem: &str| {
        let der = leaf_der(pem);
        X509Certificate::from_der(&der)
            .unwrap()
            .1
            .raw_serial()
            .to_vec()
    };
    let a = ca.sign(&csr, &id(BILL), None, &SigningPolicy::default())?;
    let b = ca.sign(&csr, &id(BILL), None, &SigningPolicy::default())?;
    assert_ne!(serial(&a.chain_pem[0]), serial(&b.chain_pem[0]));
    Ok(())
}

#[test]
fn copies_nothing_but_the_public_key_from_the_csr() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ca = new_ca(dir.path());
    // A CSR that asks to be a CA, for a DNS name, with a subject.
    let key = dir.path().join("k.pem");
    let csr_path = dir.path().join("r.csr");
    openssl(&[
        "req",
        "-new",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-subj",
        "/CN=evil.example.com/O=Evil",
        "-keyout",
        &key.to_string_lossy(),
        "-out",
        &csr_path.to_string_lossy(),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "subjectAltName=DNS:evil.example.com",
        "-addext",
        "keyUsage=keyCertSign",
    ]);
    let csr = VerifiedCsr::from_pem(&std::fs::read_to_string(&csr_path)?)?;
    let chain = ca.sign(&csr, &id(BILL), None, &SigningPolicy::default())?;
    let leaf = write(dir.path(), "leaf.pem", &chain.chain_pem[0]);
    let text = openssl(&["x509", "-noout", "-text", "-in", &leaf.to_string_lossy()]);
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(!text.contains("evil"), "{text}");
    assert!(!text.contains("Certificate Sign"), "{text}");
    assert!(text.contains(&format!("URI:{BILL}")), "{text}");
    // The public key is the CSR's.
    let key_pub = openssl(&["pkey", "-pubout", "-in", &key.to_string_lossy()]);
    let cert_pub = openssl(&["x509", "-noout", "-pubkey", "-in", &leaf.to_string_lossy()]);
    assert_eq!(key_pub, cert_pub);
    Ok(())
}

#[test]
fn accepts_the_documented_key_types_and_refuses_others() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let cases: &[(&str, &[&str], Result<KeyKind, ()>)] = &[
        (
            "p256",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Ok(KeyKind::EcdsaP256),
        ),
        (
            "p384",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Ok(KeyKind::EcdsaP384),
        ),
        ("ed25519", &["-newkey", "ed25519"], Ok(KeyKind::Ed25519)),
        (
            "rsa2048",
            &["-newkey", "rsa:2048"],
            Ok(KeyKind::Rsa { bits: 2048 }),
        ),
        ("rsa1024", &["-newkey", "rsa:1024"], Err(())),
        (
            "p521",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
            Err(()),
        ),
        (
            "k256",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
            Err(()),
        ),
    ];
    let ca = new_ca(d);
    for (name, newkey, want) in cases {
        let pem = openssl_csr(d, name, newkey, Some(BILL));
        match (VerifiedCsr::from_pem(&pem), want) {
            (Ok(csr), Ok(kind)) => {
                assert_eq!(csr.key, *kind, "{name}");
                let chain = ca.sign(&csr, &id(BILL), None, &SigningPolicy::default())?;
                let leaf = write(d, &format!("{name}.pem"), &chain.chain_pem[0]);
                let root = d.join("ca/root-cert.pem");
                let mid = write(d, "mid.pem", &chain.chain_pem[1]);
                let out = openssl(&[
                    "verify",
                    "-CAfile",
                    &root.to_string_lossy(),
                    "-untrusted",
                    &mid.to_string_lossy(),
                    &leaf.to_string_lossy(),
                ]);
                assert!(out.trim_end().ends_with(": OK"), "{name}: {out}");
            }
            (Err(CsrError::UnsupportedKey(why)), Err(())) => {
                assert!(!why.is_empty(), "{name}");
            }
            (got, want) => panic!("{name}: got {got:?}, wanted {want:?}"),
        }
    }
    Ok(())
}

#[test]
fn refuses_tampered_and_garbage_csrs() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pem = openssl_csr(
        dir.path(),
        "t",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        None,
    );
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = base64::engine::general_purpose::STANDARD.decode(b64)?;
    // Change one letter of the subject: still well-formed, but the signature no longer matches.
    let at = der.windows(7).position(|w| w == b"ignored").unwrap();
    der[at] = b'I';
    assert_eq!(
        VerifiedCsr::from_der(&der).unwrap_err(),
        CsrError::BadSignature
    );
    assert_eq!(
        CsrError::BadSignature.to_string(),
        "the CSR's signature does not verify with its own public key (tampered or corrupt)"
    );
    assert_eq!(
        VerifiedCsr::from_pem("hello").unwrap_err(),
        CsrError::NotPem
    );
    let truncated = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der[..40])
    );
    assert!(matches!(
        VerifiedCsr::from_pem(&truncated),
        Err(CsrError::Malformed(_))
    ));
    Ok(())
}

#[test]
fn refuses_a_csr_for_another_identity() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ca = new_ca(dir.path());
    let (_, csr) = new_key_and_csr(&id("spiffe://cluster.local/ns/kube-system/sa/admin"))?;
    let err = ca
        .sign(
            &VerifiedCsr::from_pem(&csr)?,
            &id(BILL),
            None,
            &SigningPolicy::default(),
        )
        .unwrap_err();
    assert!(matches!(err, SignError::IdentityNotAllowed { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "the CSR asks for \"spiffe://cluster.local/ns/kube-system/sa/admin\", but the caller may only have {BILL}"
        )
    );
    Ok(())
}

#[test]
fn ttl_is_capped_by_policy_and_by_the_ca_expiry() -> TestResult {
    let dir = tempfile::tempdir()?;
    let paths = CaPaths::new(dir.path());
    let options = InitOptions {
        ca_ttl: Duration::from_secs(7200),
        ..InitOptions::default()
    };
    store::init(&paths, &options, None)?;
    let ca = CertificateAuthority::load(&paths, None)?;
    let (_, csr) = new_key_and_csr(&id(BILL))?;
    let csr = VerifiedCsr::from_pem(&csr)?;
    let policy = SigningPolicy {
        max_ttl: Duration::from_secs(3600),
        default_ttl: Duration::from_secs(1800),
    };
    let not_after = |ttl| {
        let chain = ca.sign(&csr, &id(BILL), ttl, &policy).unwrap();
        chain.not_after - OffsetDateTime::now_utc()
    };
    let close = |d: ::time::Duration, secs: i64| {
        (d - ::time::Duration::seconds(secs)).abs() < ::time::Duration::seconds(5)
    };
    assert!(close(not_after(Some(Duration::from_secs(600))), 600));
    assert!(close(not_after(Some(Duration::from_secs(86_400))), 3600));
    assert!(close(not_after(None), 1800));
    let long = SigningPolicy {
        max_ttl: Duration::from_secs(86_400),
        ..policy
    };
    let chain = ca.sign(&csr, &id(BILL), Some(Duration::from_secs(86_400)), &long)?;
    assert_eq!(
        chain.not_after,
        ca.not_after(),
        "a leaf never outlives its CA"
    );
    Ok(())
}
