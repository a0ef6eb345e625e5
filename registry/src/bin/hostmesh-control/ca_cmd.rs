//! `hostmesh-control ca …` and `hostmesh-control token …`: offline CA work on this host.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use hostmesh_ca::csr::VerifiedCsr;
use hostmesh_ca::sign::SigningPolicy;
use hostmesh_ca::store::{self, ExistingRoot, InitOptions};
use hostmesh_ca::token::TokenKey;
use hostmesh_ca::{CaPaths, CertificateAuthority, SpiffeId, TrustDomain};

use crate::{DEFAULT_CA_DIR, StateArgs};

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a root and a signing CA (ECDSA P-256) in DIR, or a signing CA under an existing
    /// root. Refuses to overwrite an existing CA.
    Init {
        #[arg(long, env = "HOSTMESH_CA_DIR", default_value = DEFAULT_CA_DIR)]
        dir: PathBuf,
        #[arg(long, default_value = TrustDomain::DEFAULT)]
        trust_domain: TrustDomain,
        /// Existing root certificate to sign the new CA with (for example an Istio mesh's).
        #[arg(long, requires = "from_root_key")]
        from_root_cert: Option<PathBuf>,
        /// Private key of --from-root-cert.
        #[arg(long, requires = "from_root_cert")]
        from_root_key: Option<PathBuf>,
    },
    /// Sign a CSR offline (for hosts without an agent) and print the PEM chain on stdout.
    Sign {
        #[arg(long, env = "HOSTMESH_CA_DIR", default_value = DEFAULT_CA_DIR)]
        dir: PathBuf,
        /// PEM certificate signing request.
        #[arg(long)]
        csr: PathBuf,
        /// The identity to certify: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
        #[arg(long)]
        spiffe_id: SpiffeId,
        /// Lifetime, capped by --max-ttl and by the CA's own expiry.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        max_ttl: Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a join token that allows one first certificate for NAMESPACE/SERVICE_ACCOUNT.
    Create {
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        service_account: String,
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        #[command(flatten)]
        state: StateArgs,
    },
}

pub fn ca(cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init {
            dir,
            trust_domain,
            from_root_cert,
            from_root_key,
        } => {
            let existing = from_root_cert
                .zip(from_root_key)
                .map(|(cert_path, key_path)| ExistingRoot {
                    cert_path,
                    key_path,
                });
            let options = InitOptions {
                trust_domain,
                ..InitOptions::default()
            };
            let summary =
                store::init(&CaPaths::new(&dir), &options, existing.as_ref()).context("ca init")?;
            for path in &summary.written {
                println!("wrote {}", path.display());
            }
            println!(
                "signing CA for trust domain {} valid until {}",
                options.trust_domain, summary.ca_not_after
            );
            if let Some(root_key) = summary.root_key {
                println!(
                    "the root key is in {}: keep it offline, it is needed only to make more signing CAs",
                    root_key.display()
                );
            }
            Ok(())
        }
        CaCommand::Sign {
            dir,
            csr,
            spiffe_id,
            ttl,
            max_ttl,
        } => {
            let ca =
                CertificateAuthority::load(&CaPaths::new(&dir), Some(spiffe_id.trust_domain()))
                    .context("loading the CA")?;
            let pem = std::fs::read_to_string(&csr)
                .with_context(|| format!("reading {}", csr.display()))?;
            let verified =
                VerifiedCsr::from_pem(&pem).with_context(|| format!("{}", csr.display()))?;
            let policy = SigningPolicy {
                max_ttl,
                default_ttl: max_ttl,
            };
            let chain = ca.sign(&verified, &spiffe_id, Some(ttl), &policy)?;
            print!("{}", chain.to_pem());
            Ok(())
        }
    }
}

pub fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            namespace,
            service_account,
            ttl,
            state,
        } => {
            if ttl.is_zero() {
                bail!("--ttl must be longer than zero");
            }
            let id = SpiffeId::new(TrustDomain::default(), &namespace, &service_account)?;
            let key = TokenKey::load_or_create(&state.token_key())?;
            println!("{}", key.create(&id, ttl));
            Ok(())
        }
    }
}
