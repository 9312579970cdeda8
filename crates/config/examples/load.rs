//! Config flow, steps 1-5 alone: loads a config the way `gatehouse check` does, without the
//! gateway, for profiling the config crate (`valgrind --tool=callgrind`, `perf stat`):
//! `cargo build --release -p gatehouse-config --example load && target/release/examples/load DIR`.

fn main() -> std::process::ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: load CONFIG");
        return std::process::ExitCode::FAILURE;
    };
    match gatehouse_config::load_path(std::path::Path::new(&path)) {
        Ok(c) => {
            println!("ok: {} route(s)", c.routes.len());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
