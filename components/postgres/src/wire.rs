//! One connection to a PostgreSQL server, over the network capability:
//! startup and authentication (SCRAM-SHA-256, MD5, cleartext), simple
//! queries, `COPY ... TO STDOUT` and the replication protocol's copy-both
//! stream. Messages are built and parsed by `postgres-protocol`.

use std::io::{Read, Write};

use bytes::{Buf, Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;
use sluice_connector_sdk::Error;
use sluice_connector_sdk::net::Connection;

use crate::options::Options;

/// The copy-both response that opens a replication stream, which
/// `postgres-protocol` does not parse.
const COPY_BOTH_TAG: u8 = b'W';

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Queries and `COPY`.
    Query,
    /// The replication protocol on a database (`replication=database`):
    /// slots and the change stream, plus simple queries.
    Replication,
}

/// A message the server sent, as far as this connector needs to know.
pub enum Reply {
    /// One of the messages `postgres-protocol` parses.
    Message(Message),
    /// The stream of a `START_REPLICATION` is open.
    CopyBoth,
}

/// A connection, authenticated and ready for a query.
pub struct Conn {
    connection: Connection,
    server: String,
    input: BytesMut,
    output: BytesMut,
}

/// A row of a simple query's result: each value as text, or null.
pub type Row = Vec<Option<String>>;

impl Conn {
    /// Connects to the server `options` name as its user, for `purpose`.
    pub fn open(options: &Options, purpose: Purpose) -> Result<Conn, Error> {
        let server = format!("PostgreSQL {}:{}", options.host, options.port);
        let connection = if options.tls {
            // SSLRequest; the server answers 'S' and TLS starts (run by the
            // host, the certificate verified), or 'N'.
            let mut request = BytesMut::new();
            frontend::ssl_request(&mut request);
            let (answer, connection) =
                Connection::open_upgraded(&options.host, options.port, &request, b'S')
                    .map_err(|e| prefix(&server, e))?;
            if answer != b'S' {
                return Err(Error::Config(format!(
                    "{server} does not accept TLS (sslmode={}; it answered {:?}): turn ssl on in the server's configuration, or set sslmode=disable",
                    options.sslmode, answer as char
                )));
            }
            connection
        } else {
            Connection::open(&options.host, options.port, false).map_err(|e| prefix(&server, e))?
        };
        let mut conn = Conn {
            connection,
            server,
            input: BytesMut::with_capacity(1 << 16),
            output: BytesMut::new(),
        };
        let mut params: Vec<(&str, &str)> = vec![
            ("user", &options.user),
            ("database", &options.database),
            ("application_name", "sluice"),
            ("client_encoding", "UTF8"),
            // What the text values are parsed as: ISO dates, UTC times,
            // hex bytea, floats that round-trip.
            ("DateStyle", "ISO, YMD"),
            ("TimeZone", "UTC"),
            ("IntervalStyle", "iso_8601"),
            ("bytea_output", "hex"),
            ("extra_float_digits", "3"),
        ];
        if purpose == Purpose::Replication {
            params.push(("replication", "database"));
        }
        frontend::startup_message(params.iter().copied(), &mut conn.output)
            .map_err(|e| conn.io("startup", e))?;
        conn.flush()?;
        conn.authenticate(options)?;
        Ok(conn)
    }

    fn authenticate(&mut self, options: &Options) -> Result<(), Error> {
        let server = self.server.clone();
        let password = || {
            options.password.as_deref().ok_or_else(|| {
                Error::Auth(format!(
                    "{server}: the server asks user '{}' for a password; set the password option (\"${{secret:NAME}}\")",
                    options.user
                ))
            })
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.message()? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?.as_bytes(), &mut self.output)
                        .map_err(|e| self.io("password", e))?;
                    self.flush()?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash =
                        md5_hash(options.user.as_bytes(), password()?.as_bytes(), body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.output)
                        .map_err(|e| self.io("password", e))?;
                    self.flush()?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut offered = Vec::new();
                    let mut it = body.mechanisms();
                    while let Some(m) = fallible(&self.server, it.next())? {
                        offered.push(m.to_string());
                    }
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(Error::Auth(format!(
                            "{}: the server offers SASL mechanisms {offered:?}; Sluice speaks {SCRAM_SHA_256}",
                            self.server
                        )));
                    }
                    let s = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut self.output)
                        .map_err(|e| self.io("SCRAM", e))?;
                    self.flush()?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| self.protocol("SCRAM continue"))?;
                    s.update(body.data()).map_err(|e| self.io("SCRAM", e))?;
                    frontend::sasl_response(s.message(), &mut self.output)
                        .map_err(|e| self.io("SCRAM", e))?;
                    self.flush()?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let s = scram.as_mut().ok_or_else(|| self.protocol("SCRAM final"))?;
                    s.finish(body.data()).map_err(|e| {
                        Error::Auth(format!(
                            "{}: the server's SCRAM proof is wrong: {e}",
                            self.server
                        ))
                    })?;
                }
                Message::ErrorResponse(body) => {
                    let (code, text) = error_text(&self.server, body.fields());
                    // 28P01 wrong password, 28000 no pg_hba entry or role.
                    return Err(if code.starts_with("28") {
                        Error::Auth(text)
                    } else {
                        Error::Io(text)
                    });
                }
                Message::ParameterStatus(_) | Message::BackendKeyData(_) => {}
                Message::NoticeResponse(_) => {}
                Message::ReadyForQuery(_) => return Ok(()),
                _ => return Err(self.protocol("authentication")),
            }
        }
    }

    /// Runs `sql` (one statement, or several separated by `;`) and returns
    /// the rows of its last result.
    pub fn query(&mut self, sql: &str) -> Result<Vec<Row>, Error> {
        self.send_query(sql)?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            match self.message()? {
                Message::RowDescription(_) => rows.clear(),
                Message::DataRow(body) => {
                    let buffer = body.buffer();
                    let mut row = Vec::new();
                    let mut ranges = body.ranges();
                    while let Some(range) = fallible(&self.server, ranges.next())? {
                        row.push(match range {
                            None => None,
                            Some(r) => Some(
                                std::str::from_utf8(&buffer[r])
                                    .map_err(|e| self.io("a value", e))?
                                    .to_string(),
                            ),
                        });
                    }
                    rows.push(row);
                }
                Message::ErrorResponse(body) => {
                    failed = Some(self.server_error(body.fields(), sql));
                }
                Message::ReadyForQuery(_) => {
                    return match failed {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    };
                }
                _ => {}
            }
        }
    }

    /// Starts `sql` (a `COPY ... TO STDOUT`); its data then comes from
    /// [`Conn::copy_data_each`].
    pub fn copy_out(&mut self, sql: &str) -> Result<(), Error> {
        self.send_query(sql)?;
        loop {
            match self.message()? {
                Message::CopyOutResponse(_) => return Ok(()),
                Message::ErrorResponse(body) => {
                    let e = self.server_error(body.fields(), sql);
                    self.until_ready()?;
                    return Err(e);
                }
                Message::NoticeResponse(_) => {}
                _ => return Err(self.protocol("COPY")),
            }
        }
    }

    /// Hands `each` the data of every `CopyData` message of a `COPY ...
    /// TO STDOUT` received whole so far, where it lies in the input
    /// (reading from the connection first when none is); false when the
    /// `COPY` is done and the connection ready for another query. A
    /// message's data need not end at a row's end.
    pub fn copy_data_each(
        &mut self,
        mut each: impl FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        loop {
            // 'd', a length that counts itself, the data.
            let mut at = 0;
            while let Some(header) = self.input.get(at..at + 5)
                && header[0] == b'd'
            {
                let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
                let Some(end) = (at + 1)
                    .checked_add(length as usize)
                    .filter(|_| length >= 4)
                else {
                    return Err(self.protocol("COPY data"));
                };
                let Some(data) = self.input.get(at + 5..end) else {
                    break;
                };
                each(data)?;
                at = end;
            }
            if at > 0 {
                self.input.advance(at);
                return Ok(true);
            }
            if self.input.first().is_some_and(|&tag| tag != b'd') {
                match self.message()? {
                    Message::CopyDone
                    | Message::CommandComplete(_)
                    | Message::NoticeResponse(_) => continue,
                    Message::ReadyForQuery(_) => return Ok(false),
                    Message::ErrorResponse(body) => {
                        let e = self.server_error(body.fields(), "COPY");
                        self.until_ready()?;
                        return Err(e);
                    }
                    _ => return Err(self.protocol("COPY data")),
                }
            }
            self.fill()?;
        }
    }

    /// Sends `command` (`START_REPLICATION ...`) and waits for the stream.
    pub fn start_replication(&mut self, command: &str) -> Result<(), Error> {
        self.send_query(command)?;
        loop {
            match self.reply()? {
                Reply::CopyBoth => return Ok(()),
                Reply::Message(Message::ErrorResponse(body)) => {
                    let e = self.server_error(body.fields(), command);
                    self.until_ready()?;
                    return Err(e);
                }
                Reply::Message(Message::NoticeResponse(_)) => {}
                Reply::Message(_) => return Err(self.protocol("START_REPLICATION")),
            }
        }
    }

    /// The next message of a replication stream (a `CopyData` body), or
    /// none when the server ended it.
    pub fn stream_data(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            match self.message()? {
                Message::CopyData(body) => return Ok(Some(body.into_bytes())),
                Message::CopyDone => {}
                Message::NoticeResponse(_) | Message::CommandComplete(_) => {}
                Message::ReadyForQuery(_) => return Ok(None),
                Message::ErrorResponse(body) => {
                    return Err(self.server_error(body.fields(), "the replication stream"));
                }
                _ => return Err(self.protocol("the replication stream")),
            }
        }
    }

    /// Sends `data` as one `CopyData` message of a replication stream.
    pub fn send_stream(&mut self, data: &[u8]) -> Result<(), Error> {
        self.output.extend_from_slice(b"d");
        self.output
            .extend_from_slice(&(data.len() as i32 + 4).to_be_bytes());
        self.output.extend_from_slice(data);
        self.flush()
    }

    /// Ends a replication stream: tells the server, and reads what it still
    /// sends until it is ready for a query (so the slot is free when this
    /// returns).
    pub fn end_stream(&mut self) -> Result<(), Error> {
        frontend::copy_done(&mut self.output);
        self.flush()?;
        while self.stream_data()?.is_some() {}
        Ok(())
    }

    fn send_query(&mut self, sql: &str) -> Result<(), Error> {
        frontend::query(sql, &mut self.output).map_err(|e| self.io("query", e))?;
        self.flush()
    }

    fn until_ready(&mut self) -> Result<(), Error> {
        loop {
            if let Message::ReadyForQuery(_) = self.message()? {
                return Ok(());
            }
        }
    }

    fn message(&mut self) -> Result<Message, Error> {
        match self.reply()? {
            Reply::Message(m) => Ok(m),
            Reply::CopyBoth => Err(self.protocol("a query")),
        }
    }

    /// The next message, read from the connection as needed.
    fn reply(&mut self) -> Result<Reply, Error> {
        loop {
            if self.input.len() >= 5 && self.input[0] == COPY_BOTH_TAG {
                let len = u32::from_be_bytes([
                    self.input[1],
                    self.input[2],
                    self.input[3],
                    self.input[4],
                ]) as usize;
                if self.input.len() > len {
                    self.input.advance(len + 1);
                    return Ok(Reply::CopyBoth);
                }
            } else if let Some(m) =
                Message::parse(&mut self.input).map_err(|e| self.io("a message", e))?
            {
                return Ok(Reply::Message(m));
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> Result<(), Error> {
        let start = self.input.len();
        self.input.resize(start + (1 << 16), 0);
        let n = match self.connection.read(&mut self.input[start..]) {
            Ok(n) => n,
            Err(e) => {
                self.input.truncate(start);
                return Err(self.io("reading", e));
            }
        };
        self.input.truncate(start + n);
        if n == 0 {
            return Err(Error::Io(format!(
                "{}: the server closed the connection",
                self.server
            )));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        let out = self.output.split();
        self.connection
            .write_all(&out)
            .and_then(|()| self.connection.flush())
            .map_err(|e| self.io("writing", e))
    }

    fn io(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Io(format!("{}: {what}: {e}", self.server))
    }

    fn protocol(&self, during: &str) -> Error {
        Error::Io(format!(
            "{}: an unexpected message during {during}",
            self.server
        ))
    }

    fn server_error(&self, fields: ErrorFields<'_>, during: &str) -> Error {
        let (code, text) = error_text(&self.server, fields);
        let text = format!("{text} (during: {})", shorten(during));
        match code.as_str() {
            // Privilege, role, password.
            c if c.starts_with("28") || c == "42501" => Error::Auth(text),
            // Undefined table, object, syntax: what the config names.
            "42P01" | "42704" | "42601" | "3D000" => Error::Config(text),
            _ => Error::Io(text),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        frontend::terminate(&mut self.output);
        let _ = self.flush();
    }
}

/// `e`, said of `server` ("PostgreSQL host:port"); once, where the host's
/// message already starts with the address.
fn prefix(server: &str, e: Error) -> Error {
    let said = |m: String| match server.rsplit_once(' ') {
        Some((kind, address)) if m.starts_with(address) => format!("{kind} {m}"),
        _ => format!("{server}: {m}"),
    };
    match e {
        Error::Io(m) => Error::Io(said(m)),
        Error::Auth(m) => Error::Auth(said(m)),
        other => other,
    }
}

fn fallible<T>(server: &str, r: std::io::Result<Option<T>>) -> Result<Option<T>, Error> {
    r.map_err(|e| Error::Io(format!("{server}: a malformed message: {e}")))
}

/// The SQLSTATE and a sentence of an error response: its message, detail
/// and hint.
fn error_text(server: &str, mut fields: ErrorFields<'_>) -> (String, String) {
    let (mut code, mut message, mut detail, mut hint) =
        (String::new(), String::new(), String::new(), String::new());
    while let Ok(Some(f)) = fields.next() {
        let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'C' => code = v,
            b'M' => message = v,
            b'D' => detail = v,
            b'H' => hint = v,
            _ => {}
        }
    }
    let mut text = format!("{server}: {message} (SQLSTATE {code})");
    for extra in [detail, hint] {
        if !extra.is_empty() {
            text.push_str(&format!("; {extra}"));
        }
    }
    (code, text)
}

fn shorten(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}
