//! Runs the `nft` executable: loads JSON batches on its standard input and reads the ruleset.
//!
//! The `nftables` crate's own helpers do not capture `nft`'s standard error, so this module runs
//! the command itself and puts what `nft` said into the error.

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};

use nftables::schema::Nftables;

/// Why `nft` could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("could not run {program:?} (is the nftables package installed?)")]
    Spawn {
        program: OsString,
        source: std::io::Error,
    },
    #[error("{program:?} {action} failed ({status}): {stderr}")]
    Failed {
        program: OsString,
        action: &'static str,
        status: ExitStatus,
        stderr: String,
    },
    #[error("could not encode the nftables batch as JSON: {0}")]
    Encode(serde_json::Error),
    #[error("{program:?} printed a ruleset that is not the JSON expected")]
    Decode {
        program: OsString,
        source: serde_json::Error,
    },
}

/// The `nft` executable to run (`nft` from `PATH` by default).
#[derive(Debug, Clone)]
pub struct Nft {
    program: OsString,
}

impl Default for Nft {
    fn default() -> Self {
        Self {
            program: OsString::from("nft"),
        }
    }
}

impl Nft {
    /// Uses another executable, for tests or unusual installations.
    pub fn with_program(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
        }
    }

    /// Loads one batch with `nft -j -f -`: all of it takes effect, or none of it.
    pub fn apply(&self, batch: &Nftables<'_>) -> Result<(), NftError> {
        let payload = serde_json::to_vec(batch).map_err(NftError::Encode)?;
        self.run(&["-j", "-f", "-"], Some(&payload), "loading a batch")
            .map(drop)
    }

    /// The whole ruleset as `nft -j list ruleset` prints it.
    pub fn list_ruleset(&self) -> Result<Nftables<'static>, NftError> {
        let out = self.list_ruleset_json()?;
        serde_json::from_value(out).map_err(|source| NftError::Decode {
            program: self.program.clone(),
            source,
        })
    }

    /// The whole ruleset as untyped JSON, for comparisons that must see every field.
    pub fn list_ruleset_json(&self) -> Result<serde_json::Value, NftError> {
        let out = self.run(&["-j", "list", "ruleset"], None, "listing the ruleset")?;
        serde_json::from_slice(&out).map_err(|source| NftError::Decode {
            program: self.program.clone(),
            source,
        })
    }

    fn run(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        action: &'static str,
    ) -> Result<Vec<u8>, NftError> {
        let spawn_error = |source| NftError::Spawn {
            program: self.program.clone(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A write error means nft exited early; its status and stderr say why.
            let written = pipe.write_all(input);
            drop(pipe);
            if let Err(e) = written {
                tracing::debug!(error = %e, "nft closed its input early");
            }
        }
        let output = child.wait_with_output().map_err(spawn_error)?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(NftError::Failed {
                program: self.program.clone(),
                action,
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }
}
