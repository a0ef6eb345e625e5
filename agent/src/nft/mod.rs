//! Traffic interception with nftables: the agent's own table, `inet hostmesh`.
//!
//! The agent touches no other table. [`install`] replaces the whole table in one atomic
//! transaction (so a bad ruleset leaves the previous one in force) and [`remove`] deletes it,
//! succeeding when it is already gone. `hostmesh-agent cleanup` calls [`remove`].

mod command;
mod config;
mod rules;

pub use command::{Nft, NftError};
pub use config::{
    DEFAULT_SKIP_MARK, DNS_PORT, INBOUND_PORT, InterceptionConfig, InterceptionSpec,
    InvalidInterception, OUTBOUND_PORT, Problem,
};
pub use rules::{FAMILY, TABLE, as_ruleset, remove_batch, replace_batch, table_objects};

/// Installs the table for `config`, replacing any previous version in the same transaction.
pub fn install(nft: &Nft, config: &InterceptionConfig) -> Result<(), NftError> {
    nft.apply(&replace_batch(config))?;
    tracing::info!(
        table = TABLE,
        outbound_port = config.outbound_port(),
        inbound_port = config.inbound_port(),
        dns_capture = config.dns_capture(),
        "interception table installed"
    );
    Ok(())
}

/// Removes the table; succeeds when there is none.
pub fn remove(nft: &Nft) -> Result<(), NftError> {
    nft.apply(&remove_batch())?;
    tracing::info!(table = TABLE, "interception table removed");
    Ok(())
}

#[cfg(test)]
mod tests;
