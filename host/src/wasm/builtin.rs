//! Connectors compiled into the binary (built from `components/` by the
//! build script), each with its machine code compiled by the same build.

/// A connector the binary carries.
pub struct Builtin {
    /// The name pipelines use for it.
    pub name: &'static str,
    /// The component.
    pub wasm: &'static [u8],
    /// Hex sha256 of `wasm`, computed by the build.
    pub sha256: &'static str,
    /// `wasm` compiled by the build script for
    /// [`sluice_wasm_engine::config`] and the build machine's CPU; empty
    /// when the build could not (a cross build). The runtime uses it when
    /// its engine accepts it and compiles `wasm` otherwise.
    pub compiled: &'static [u8],
}

/// The built-in `files` connector. Statics, not consts: a `const` is copied
/// into every place that names it (it was seven copies, 83 MB of the
/// binary).
pub static FILES: Builtin = Builtin {
    name: "files",
    wasm: include_bytes!(env!("SLUICE_FILES_WASM")),
    sha256: env!("SLUICE_FILES_SHA256"),
    compiled: include_bytes!(env!("SLUICE_FILES_CWASM")),
};

/// The built-in `kafka` connector.
pub static KAFKA: Builtin = Builtin {
    name: "kafka",
    wasm: include_bytes!(env!("SLUICE_KAFKA_WASM")),
    sha256: env!("SLUICE_KAFKA_SHA256"),
    compiled: include_bytes!(env!("SLUICE_KAFKA_CWASM")),
};

/// The built-in `postgres` connector.
pub static POSTGRES: Builtin = Builtin {
    name: "postgres",
    wasm: include_bytes!(env!("SLUICE_POSTGRES_WASM")),
    sha256: env!("SLUICE_POSTGRES_SHA256"),
    compiled: include_bytes!(env!("SLUICE_POSTGRES_CWASM")),
};

/// The edge function (`components/edge`) as the build compiled it: a
/// configured function whose component is that file (its sha256 is
/// `EDGE_SHA256`) starts from this code instead of compiling. The binary
/// does not carry the component itself.
pub static EDGE_CODE: &[u8] = include_bytes!(env!("SLUICE_EDGE_CWASM"));

/// Hex sha256 of the edge function the build compiled into [`EDGE_CODE`].
pub const EDGE_SHA256: &str = env!("SLUICE_EDGE_SHA256");

/// The built-in connectors.
pub fn all() -> [&'static Builtin; 3] {
    [&FILES, &KAFKA, &POSTGRES]
}

/// The built-in connector called `name`.
pub fn named(name: &str) -> Option<&'static Builtin> {
    all().into_iter().find(|b| b.name == name)
}

/// The hosts a built-in connector's `config` names as its source, granted
/// as the files connector's source prefix is: the Kafka bootstrap servers,
/// the PostgreSQL server of `url`. Brokers a Kafka cluster advertises
/// beyond them need their own grant.
pub fn implicit_network(name: &str, config: &serde_json::Value) -> Vec<String> {
    match name {
        "kafka" => config["kafka.bootstrap.servers"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| format!("tcp://{s}"))
            .collect(),
        "postgres" => config["url"]
            .as_str()
            .and_then(postgres_server)
            .map(|hostport| vec![format!("postgres://{hostport}")])
            .unwrap_or_default(),
        _ => vec![],
    }
}

/// `host:port` of a `postgres://user@host:port/database` URL (port 5432
/// when it names none).
fn postgres_server(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let authority = rest.split(['/', '?']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(if hostport.ends_with(']') || !hostport.contains(':') {
        format!("{hostport}:5432")
    } else {
        hostport.to_string()
    })
}
