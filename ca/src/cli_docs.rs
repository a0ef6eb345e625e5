//! Man pages and shell completions for the project's command-line tools, written at packaging
//! time by each binary's hidden `generate-docs` command. Lives here because every binary
//! depends on this crate; it knows nothing of what the commands do.

use std::fs;
use std::io;
use std::path::Path;

use clap_complete::Shell;

/// Writes `man/<name>.1` (and `<name>-<sub>.1` for each subcommand) and completions for bash,
/// zsh and fish under `out`.
pub fn write(cmd: clap::Command, out: &Path) -> io::Result<()> {
    let mut cmd = cmd;
    cmd.build();
    let name = cmd.get_name().to_owned();
    let man = out.join("man");
    fs::create_dir_all(&man)?;
    write_page(&cmd, &name, &man)?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let page = format!("{name}-{}", sub.get_name());
        let sub = sub
            .clone()
            .display_name(page.clone())
            .bin_name(page.clone());
        write_page(&sub, &page, &man)?;
    }
    for (shell, dir) in [
        (Shell::Bash, "bash"),
        (Shell::Zsh, "zsh"),
        (Shell::Fish, "fish"),
    ] {
        let dir = out.join("completions").join(dir);
        fs::create_dir_all(&dir)?;
        clap_complete::generate_to(shell, &mut cmd, &name, &dir)?;
    }
    Ok(())
}

fn write_page(cmd: &clap::Command, page: &str, dir: &Path) -> io::Result<()> {
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(page.to_uppercase())
        .source(format!("hostmesh {}", env!("CARGO_PKG_VERSION")))
        .manual("hostmesh")
        .render(&mut text)?;
    fs::write(dir.join(format!("{page}.1")), text)
}
