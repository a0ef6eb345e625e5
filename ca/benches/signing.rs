//! CSR signings per second on one core: parse and verify the CSR, then issue the leaf (random
//! serial, ECDSA P-256 signature by the signing CA). Run with `cargo bench -p hostmesh-ca`.
//! The throughput line of each group is the figure to compare with the goal of 2,000/s.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hostmesh_ca::csr::VerifiedCsr;
use hostmesh_ca::sign::SigningPolicy;
use hostmesh_ca::store::{self, InitOptions};
use hostmesh_ca::workload::new_key_and_csr;
use hostmesh_ca::{CaPaths, CertificateAuthority, SpiffeId};

fn signing(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let paths = CaPaths::new(dir.path());
    store::init(&paths, &InitOptions::default(), None).unwrap();
    let ca = CertificateAuthority::load(&paths, None).unwrap();
    let id: SpiffeId = "spiffe://cluster.local/ns/demo/sa/bill-service"
        .parse()
        .unwrap();
    let (_, csr_pem) = new_key_and_csr(&id).unwrap();
    let policy = SigningPolicy::default();

    let mut group = c.benchmark_group("csr_signing");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_and_sign_p256", |b| {
        b.iter(|| {
            let csr = VerifiedCsr::from_pem(black_box(&csr_pem)).unwrap();
            black_box(ca.sign(&csr, &id, None, &policy).unwrap())
        })
    });
    group.bench_function("verify_csr_only", |b| {
        b.iter(|| black_box(VerifiedCsr::from_pem(black_box(&csr_pem)).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
