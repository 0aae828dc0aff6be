//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the
//! migration folders at compile time but does not watch for new files.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
