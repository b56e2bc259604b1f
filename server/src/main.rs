//! `tern`: the control plane for zero-downtime data migrations. The program
//! is the library's [`tern_server::Tern`]; a team that needs its own
//! transformers builds the same binary with them (see the library's docs).

fn main() -> std::process::ExitCode {
    tern_server::Tern::new().run()
}
