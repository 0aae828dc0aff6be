//! Rebuilds when a migration is added or the dashboard is rebuilt:
//! `sqlx::migrate!` and `include_dir!` embed their folders at compile
//! time but do not watch them.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-changed=../web/dist");
}
