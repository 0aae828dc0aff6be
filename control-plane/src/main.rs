//! `argosy`: the control-plane server and the CLI on its API.

fn main() -> std::process::ExitCode {
    argosy::cli::main()
}
