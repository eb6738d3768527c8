//! The connector's config: where the server is, who connects, which
//! tables, and the names of the slot and publication each stream uses.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_connector_sdk::Error;

/// A parsed config.
#[derive(Debug, Clone)]
pub struct Options {
    /// Host name or address.
    pub host: String,
    /// Port [default: 5432].
    pub port: u16,
    /// The database.
    pub database: String,
    /// The user, who needs the REPLICATION attribute.
    pub user: String,
    /// The password (usually `${secret:NAME}` in the pipeline).
    pub password: Option<String>,
    /// `sslmode` as given [default: disable].
    pub sslmode: String,
    /// Whether the connection is to use TLS.
    pub tls: bool,
    /// The tables, `schema.table` or `schema.*`.
    pub tables: Vec<String>,
    /// What slot and publication names start with [default: sluice].
    pub slot_prefix: String,
    /// One publication for every stream, instead of one per table.
    pub publication: Option<String>,
    /// Whether a missing publication is created [default: true].
    pub create_publication: bool,
    /// Whether a stream starts with a snapshot of its table [default:
    /// true]; else with the changes after its slot is made.
    pub snapshot: bool,
    /// Snapshot rows per batch the reader hands over.
    pub rows_per_batch: usize,
    /// A table's snapshot is copied in parts of at least this many bytes
    /// of the table, read at once, when the host has lanes for them.
    pub snapshot_part_bytes: u64,
    /// About how many changes a planned batch holds at most: it ends at
    /// the first commit after this many (a backlog is several batches).
    pub max_changes_per_batch: u64,
}

const KNOWN: &[&str] = &[
    "url",
    "password",
    "tables",
    "slotPrefix",
    "publication",
    "createPublication",
    "snapshot",
    "sslmode",
    "rowsPerBatch",
    "snapshotPartBytes",
    "maxChangesPerBatch",
    // Set by the host.
    "schema",
    "plan",
];

impl Options {
    /// Parses the JSON config.
    pub fn parse(config: &str) -> Result<Options, Error> {
        let value: Value = serde_json::from_str(config)
            .map_err(|e| Error::Config(format!("the config is not JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| Error::Config("the config must be a JSON object".into()))?;
        let mut map = BTreeMap::new();
        for (k, v) in object {
            if !KNOWN.contains(&k.as_str()) {
                return Err(Error::Config(format!(
                    "unknown option '{k}'; the PostgreSQL connector knows {}",
                    KNOWN[..KNOWN.len() - 2].join(", ")
                )));
            }
            if let Some(s) = v.as_str() {
                map.insert(k.as_str(), s.to_string());
            }
        }
        let url = map.get("url").ok_or_else(|| {
            Error::Config(
                "give the server as url = \"postgres://user@host:5432/database\" (a pipeline's `source`)"
                    .into(),
            )
        })?;
        let mut o = parse_url(url)?;
        if let Some(p) = map.get("password") {
            o.password = Some(p.clone());
        }
        if let Some(s) = map.get("sslmode") {
            o.sslmode = s.clone();
        }
        o.tls = match o.sslmode.as_str() {
            "disable" | "allow" | "prefer" => false,
            "require" | "verify-ca" | "verify-full" => true,
            other => {
                return Err(Error::Config(format!(
                    "sslmode '{other}': use disable, prefer, require, verify-ca or verify-full"
                )));
            }
        };
        if let Some(t) = map.get("tables") {
            o.tables = t
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(p) = map.get("slotPrefix") {
            if p.is_empty()
                || p.len() > 20
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(Error::Config(format!(
                    "slotPrefix '{p}': up to 20 lower-case letters, digits and '_'"
                )));
            }
            o.slot_prefix = p.clone();
        }
        o.publication = map.get("publication").cloned();
        o.create_publication = flag(&map, "createPublication", true)?;
        o.snapshot = flag(&map, "snapshot", true)?;
        if let Some(n) = map.get("rowsPerBatch") {
            o.rows_per_batch =
                n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::Config(format!("rowsPerBatch '{n}': a positive number"))
                })?;
        }
        if let Some(n) = map.get("snapshotPartBytes") {
            o.snapshot_part_bytes = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::Config(format!("snapshotPartBytes '{n}': a positive number"))
            })?;
        }
        if let Some(n) = map.get("maxChangesPerBatch") {
            o.max_changes_per_batch = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::Config(format!("maxChangesPerBatch '{n}': a positive number"))
            })?;
        }
        Ok(o)
    }

    /// The replication slot of the stream of `table` (`schema.table`):
    /// the prefix, the table's name as far as it fits, and a hash of it
    /// with the database's (slots are the server's, not a database's), so
    /// that two tables never share one.
    pub fn slot(&self, table: &str) -> String {
        object_name(&self.slot_prefix, table, &self.database)
    }

    /// The publication the stream of `table` reads.
    pub fn publication(&self, table: &str) -> String {
        match &self.publication {
            Some(p) => p.clone(),
            None => object_name(&self.slot_prefix, table, &self.database),
        }
    }
}

fn flag(map: &BTreeMap<&str, String>, key: &str, default: bool) -> Result<bool, Error> {
    match map.get(key).map(String::as_str) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(Error::Config(format!("{key} '{v}': true or false"))),
    }
}

/// `prefix_schema_table_hash`: lower-case letters, digits and `_`, at
/// most 63 bytes (PostgreSQL's limit for names).
fn object_name(prefix: &str, table: &str, database: &str) -> String {
    let hash = hex::encode(&Sha256::digest(format!("{database}\0{table}").as_bytes())[..4]);
    let mut readable: String = table
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '_',
        })
        .collect();
    readable.truncate(63 - prefix.len() - hash.len() - 2);
    format!("{prefix}_{readable}_{hash}")
}

/// `postgres://user[:password]@host[:port]/database[?sslmode=...]`.
fn parse_url(url: &str) -> Result<Options, Error> {
    let bad = |why: &str| {
        Error::Config(format!(
            "url '{}': {why}; write postgres://user@host:5432/database",
            redact(url)
        ))
    };
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| bad("it must start with postgres://"))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, database) = rest.split_once('/').ok_or_else(|| bad("no database"))?;
    let (user_info, hostport) = authority.rsplit_once('@').ok_or_else(|| bad("no user"))?;
    let (user, password) = match user_info.split_once(':') {
        Some((u, p)) => (u, Some(decode(p))),
        None => (user_info, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || p.is_empty() => (
            h,
            p.parse::<u16>()
                .map_err(|_| bad("the port is not a number"))?,
        ),
        _ => (hostport, 5432),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || user.is_empty() || database.is_empty() {
        return Err(bad("host, user and database are all needed"));
    }
    let mut sslmode = "disable".to_string();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => sslmode = v.to_string(),
            _ => {
                return Err(bad(&format!(
                    "unknown parameter '{pair}' (sslmode is known)"
                )));
            }
        }
    }
    Ok(Options {
        host: host.to_string(),
        port,
        database: decode(database),
        user: decode(user),
        password,
        sslmode,
        tls: false,
        tables: Vec::new(),
        slot_prefix: "sluice".into(),
        publication: None,
        create_publication: true,
        snapshot: true,
        rows_per_batch: 65_536,
        snapshot_part_bytes: 256 << 20,
        max_changes_per_batch: 500_000,
    })
}

/// Percent-decoding of a URL part.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` without a password in it, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let colon = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..colon], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let o =
            parse_url("postgres://rep%40x:p%3Aw@db.internal:6432/shop?sslmode=require").unwrap();
        assert_eq!(
            (o.user.as_str(), o.host.as_str(), o.port),
            ("rep@x", "db.internal", 6432)
        );
        assert_eq!(
            (o.database.as_str(), o.password.as_deref()),
            ("shop", Some("p:w"))
        );
        assert_eq!(o.sslmode, "require");
        assert_eq!(parse_url("postgresql://u@h/d").unwrap().port, 5432);
        let e = parse_url("postgres://u:secret@h").unwrap_err();
        let Error::Config(m) = e else { panic!() };
        assert!(!m.contains("secret"), "{m}");
    }

    #[test]
    fn names_fit_and_differ() {
        let o = parse_url("postgres://u@h/d").unwrap();
        let long = format!("public.{}", "x".repeat(80));
        assert!(o.slot(&long).len() <= 63);
        assert_ne!(o.slot("public.a_b"), o.slot("public_a.b"));
        assert!(o.slot("public.Orders").starts_with("sluice_public_orders_"));
    }
}
