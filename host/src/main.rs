//! `sluice`: ingest files and connector streams into lakehouse tables.

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Bring data into lakehouse tables with WebAssembly connectors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: cli::Global,
}

#[derive(Subcommand)]
enum Command {
    /// Load files (or a connector's stream) into a table, replacing it by
    /// default (CREATE OR REPLACE TABLE ... AS SELECT).
    Ingest(cli::ingest::IngestArgs),
    /// Load the files not loaded before into a table (COPY INTO).
    CopyInto(cli::copy_into::CopyIntoArgs),
    /// Load new files as they arrive, exactly once (Auto Loader).
    Stream(cli::stream::StreamArgs),
    /// Run SQL: CREATE TABLE AS SELECT, COPY INTO, CREATE OR REFRESH
    /// STREAMING TABLE.
    Sql(cli::sql::SqlArgs),
    /// Run a pipeline file (TOML or JSON) once, to completion.
    Run(cli::run::RunArgs),
    /// Serve uploads, connector uploads, pipelines and their triggers over
    /// HTTP.
    Serve(cli::serve::ServeArgs),
    /// List the files a stream or COPY INTO has discovered, and their state
    /// (cloud_files_state).
    Files(cli::stream::FilesArgs),
    /// List the built-in connectors and their specs.
    Connectors {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the schema a source would produce.
    Discover(cli::ingest::DiscoverArgs),
    /// Compact a Delta table's small files into files of a target size, in
    /// one commit that concurrent appends survive (OPTIMIZE).
    Optimize(cli::upkeep::OptimizeArgs),
    /// Delete the files of a Delta table that no version within the
    /// retention uses (VACUUM).
    Vacuum(cli::upkeep::VacuumArgs),
    /// Work on a connector component: `sluice connector test`.
    #[command(subcommand)]
    Connector(cli::connector::ConnectorCommand),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                // A commit that finds the table moved on and checks for
                // conflicts is routine (concurrent appends, a compaction).
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "warn,deltalake_core::kernel::transaction=error",
                    )
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    bound_malloc_arenas();
    // One TLS crypto provider for the process (rustls cannot pick one when
    // two are compiled in).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", sluice::engine::failure::describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = cli::Env::read(&cli.global)?;
    match cli.command {
        Command::Ingest(args) => cli::ingest::ingest(&env, args).await,
        Command::Discover(args) => cli::ingest::discover(&env, args).await,
        Command::Connectors { json } => cli::ingest::connectors(&env, json).await,
        Command::Connector(command) => cli::connector::connector(&env, command).await,
        Command::Optimize(args) => cli::upkeep::optimize(&env, args).await,
        Command::Vacuum(args) => cli::upkeep::vacuum(&env, args).await,
        Command::CopyInto(args) => cli::copy_into::copy_into(&env, args).await,
        Command::Stream(args) => cli::stream::stream(&env, args).await,
        Command::Files(args) => cli::stream::files(&env, args).await,
        Command::Sql(args) => cli::sql::sql(&env, args).await,
        Command::Run(args) => cli::run::run(&env, args).await,
        Command::Serve(args) => cli::serve::run(&env, args).await,
    }
}

/// glibc's malloc gives threads their own arenas, up to eight per core, and
/// each arena keeps what was freed in it for later. A run's threads (the
/// runtime's workers, a reading thread per lane, blocking I/O) pass large
/// buffers between them (batches, encoded row groups), so with many arenas
/// memory freed in one is not reused by the next allocation in another:
/// peak RSS of a 1 GiB CSV load fell from ~330 to ~240 MiB with one arena
/// per core, and grows much less with the input. `MALLOC_ARENA_MAX`, when
/// set, still decides.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "mallopt, before any thread starts")]
fn bound_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt changes a setting of the allocator; it is called
    // before the process starts its other threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_malloc_arenas() {}
