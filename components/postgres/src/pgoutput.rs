//! The replication stream's messages: `XLogData` and keepalives around
//! the `pgoutput` plugin's logical messages (protocol version 1), and the
//! standby status update a client answers with.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A message of the replication stream.
pub enum Frame {
    /// WAL data: one logical message.
    Data(Logical),
    /// The server's position; it wants an answer now when `reply`.
    Keepalive { wal_end: u64, reply: bool },
}

/// A column's value in a tuple.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    /// A TOASTed value the change did not touch; its value is not sent.
    Unchanged,
    Text(Bytes),
}

/// A relation's columns as the stream describes them.
#[derive(Debug, Clone)]
pub struct Relation {
    pub namespace: String,
    pub name: String,
    pub columns: Vec<String>,
    /// Each column's type and type modifier.
    pub types: Vec<(u32, i32)>,
}

/// A `pgoutput` message.
pub enum Logical {
    Begin {
        final_lsn: u64,
        commit_micros: i64,
    },
    Commit {
        end_lsn: u64,
    },
    Relation {
        oid: u32,
        relation: Relation,
    },
    Insert {
        oid: u32,
        new: Vec<Value>,
    },
    Update {
        oid: u32,
        old: Option<Vec<Value>>,
        new: Vec<Value>,
    },
    Delete {
        oid: u32,
        old: Vec<Value>,
    },
    Truncate {
        oids: Vec<u32>,
    },
    /// Origin, type and message records: nothing to keep.
    Other,
}

/// Parses one `CopyData` body of the stream.
pub fn frame(mut b: Bytes) -> Result<Frame, String> {
    match take_u8(&mut b)? {
        b'w' => {
            need(&b, 24)?;
            b.advance(24); // start, end and send time of the WAL data
            Ok(Frame::Data(logical(b)?))
        }
        b'k' => {
            need(&b, 17)?;
            let wal_end = b.get_u64();
            b.advance(8);
            Ok(Frame::Keepalive {
                wal_end,
                reply: b.get_u8() == 1,
            })
        }
        other => Err(format!("unknown replication message '{}'", other as char)),
    }
}

/// A standby status update: `written` received, `flushed` durable (0:
/// nothing confirmed, so the slot does not move).
pub fn status(written: u64, flushed: u64) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
        - PG_EPOCH_MICROS;
    let mut out = Vec::with_capacity(34);
    out.push(b'r');
    out.extend_from_slice(&written.to_be_bytes());
    out.extend_from_slice(&flushed.to_be_bytes());
    out.extend_from_slice(&flushed.to_be_bytes());
    out.extend_from_slice(&now.to_be_bytes());
    out.push(0);
    out
}

fn logical(mut b: Bytes) -> Result<Logical, String> {
    Ok(match take_u8(&mut b)? {
        b'B' => {
            need(&b, 20)?;
            let final_lsn = b.get_u64();
            let commit = b.get_i64();
            Logical::Begin {
                final_lsn,
                commit_micros: commit + PG_EPOCH_MICROS,
            }
        }
        b'C' => {
            need(&b, 25)?;
            b.advance(9); // flags, commit LSN
            Logical::Commit {
                end_lsn: b.get_u64(),
            }
        }
        b'R' => {
            need(&b, 4)?;
            let oid = b.get_u32();
            let namespace = cstr(&mut b)?;
            let name = cstr(&mut b)?;
            need(&b, 3)?;
            b.advance(1); // replica identity
            let n = b.get_u16();
            let mut columns = Vec::with_capacity(n as usize);
            let mut types = Vec::with_capacity(n as usize);
            for _ in 0..n {
                need(&b, 1)?;
                b.advance(1); // flags (part of the key)
                columns.push(cstr(&mut b)?);
                need(&b, 8)?;
                types.push((b.get_u32(), b.get_i32()));
            }
            Logical::Relation {
                oid,
                relation: Relation {
                    namespace,
                    name,
                    columns,
                    types,
                },
            }
        }
        b'I' => {
            need(&b, 5)?;
            let oid = b.get_u32();
            expect(&mut b, b'N')?;
            Logical::Insert {
                oid,
                new: tuple(&mut b)?,
            }
        }
        b'U' => {
            need(&b, 5)?;
            let oid = b.get_u32();
            let mut old = None;
            let mut kind = take_u8(&mut b)?;
            if kind == b'K' || kind == b'O' {
                old = Some(tuple(&mut b)?);
                kind = take_u8(&mut b)?;
            }
            if kind != b'N' {
                return Err("an update without its new tuple".into());
            }
            Logical::Update {
                oid,
                old,
                new: tuple(&mut b)?,
            }
        }
        b'D' => {
            need(&b, 5)?;
            let oid = b.get_u32();
            let kind = take_u8(&mut b)?;
            if kind != b'K' && kind != b'O' {
                return Err("a delete without its old tuple".into());
            }
            Logical::Delete {
                oid,
                old: tuple(&mut b)?,
            }
        }
        b'T' => {
            need(&b, 5)?;
            let n = b.get_u32();
            b.advance(1); // CASCADE / RESTART IDENTITY
            need(&b, 4 * n as usize)?;
            Logical::Truncate {
                oids: (0..n).map(|_| b.get_u32()).collect(),
            }
        }
        _ => Logical::Other,
    })
}

fn tuple(b: &mut Bytes) -> Result<Vec<Value>, String> {
    need(b, 2)?;
    let n = b.get_u16();
    let mut values = Vec::with_capacity(n as usize);
    for _ in 0..n {
        values.push(match take_u8(b)? {
            b'n' => Value::Null,
            b'u' => Value::Unchanged,
            b't' | b'b' => {
                need(b, 4)?;
                let len = b.get_u32() as usize;
                need(b, len)?;
                Value::Text(b.split_to(len))
            }
            other => return Err(format!("unknown tuple value kind '{}'", other as char)),
        });
    }
    Ok(values)
}

fn take_u8(b: &mut Bytes) -> Result<u8, String> {
    need(b, 1)?;
    Ok(b.get_u8())
}

fn expect(b: &mut Bytes, tag: u8) -> Result<(), String> {
    match take_u8(b)? {
        t if t == tag => Ok(()),
        t => Err(format!("expected '{}', found '{}'", tag as char, t as char)),
    }
}

fn cstr(b: &mut Bytes) -> Result<String, String> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or("a name without its end")?;
    let s = String::from_utf8_lossy(&b[..end]).into_owned();
    b.advance(end + 1);
    Ok(s)
}

fn need(b: &Bytes, n: usize) -> Result<(), String> {
    if b.remaining() < n {
        Err("a message shorter than its fields".into())
    } else {
        Ok(())
    }
}

/// `X/Y`, as PostgreSQL writes a WAL position.
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// A WAL position from its `X/Y` text.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(lsn_text(0x16_B374_D848), "16/B374D848");
    }

    #[test]
    fn an_update_with_its_old_key() {
        let mut m = vec![b'w'];
        m.extend_from_slice(&[0; 24]);
        m.extend_from_slice(b"U");
        m.extend_from_slice(&7u32.to_be_bytes());
        m.extend_from_slice(b"K\x00\x01t\x00\x00\x00\x011");
        m.extend_from_slice(b"N\x00\x02t\x00\x00\x00\x012u");
        let Frame::Data(Logical::Update { oid, old, new }) = frame(Bytes::from(m)).unwrap() else {
            panic!()
        };
        assert_eq!(oid, 7);
        assert!(matches!(&old.unwrap()[0], Value::Text(t) if &t[..] == b"1"));
        assert!(matches!(new[1], Value::Unchanged));
    }
}
