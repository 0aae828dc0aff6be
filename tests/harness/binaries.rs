//! Finds the `argosy` and `argosy-agent` binaries cargo built next to the
//! test executables (`target/<profile>/`, the parent of `deps/`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Paths of the binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The control plane and CLI.
    pub argosy: PathBuf,
    /// The agent.
    pub agent: PathBuf,
}

impl Binaries {
    /// The folder both binaries sit in (the control plane serves the agent
    /// binary from here at `/downloads/…`).
    pub fn dir(&self) -> &Path {
        self.argosy.parent().unwrap_or_else(|| Path::new("."))
    }
}

fn locate() -> Result<Binaries, String> {
    let dir = match std::env::var_os("ARGOSY_TEST_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot find the test executable: {e}"))?;
            // target/debug/deps/fleet-1234 → target/debug
            exe.parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .ok_or_else(|| format!("{} has no grandparent folder", exe.display()))?
        }
    };
    let binaries = Binaries {
        argosy: dir.join("argosy"),
        agent: dir.join("argosy-agent"),
    };
    for path in [&binaries.argosy, &binaries.agent] {
        if !path.is_file() {
            return Err(format!(
                "{} does not exist: build the binaries first with `cargo build --workspace --bins` \
                 (scripts/test does), with the same CARGO_TARGET_DIR and profile as the tests, \
                 or point ARGOSY_TEST_BIN_DIR at the folder holding argosy and argosy-agent",
                path.display()
            ));
        }
    }
    Ok(binaries)
}

/// The binaries under test. Panics with what to do when they are missing.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();
    match BINARIES.get_or_init(locate) {
        Ok(binaries) => binaries,
        Err(message) => panic!("{message}"),
    }
}
