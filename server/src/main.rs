//! `tern`: the control plane for zero-downtime data migrations. The program
//! is the library's [`tern_server::Tern`]; a team that needs its own
//! transformers builds the same binary with them (see the library's docs).

/// mimalloc instead of the system allocator: a bulk load reads, transforms
/// and frees millions of small values a second, allocated in the reader task
/// and freed in the writer's, on other threads; in `bench/bulk_load.sh`
/// glibc's malloc and free took about a third of Tern's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tern_server::Tern::new().run()
}
