//! SASL exchanges: PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802,
//! 7677), the mechanisms Kafka brokers offer over SASL_PLAINTEXT/SASL_SSL.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use sluice_connector_sdk::Error;

use crate::options::{Mechanism, Sasl};

fn auth(message: impl Into<String>) -> Error {
    Error::Auth(message.into())
}

/// Where an exchange is.
enum Step {
    Start,
    /// SCRAM: the client-first message sent, without its GS2 header.
    ScramFirst {
        bare: String,
        nonce: String,
    },
    /// SCRAM: the server signature expected in the server-final message.
    ScramFinal {
        server_signature: Vec<u8>,
    },
    Done,
}

/// One client-side exchange.
pub struct Exchange<'a> {
    sasl: &'a Sasl,
    step: Step,
}

impl<'a> Exchange<'a> {
    /// A new exchange for `sasl`.
    pub fn new(sasl: &'a Sasl) -> Self {
        Exchange {
            sasl,
            step: Step::Start,
        }
    }

    /// The next message to send, given the server's last one; `None` when
    /// the exchange is done.
    pub fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, Error> {
        let s = self.sasl;
        match (std::mem::replace(&mut self.step, Step::Done), s.mechanism) {
            (Step::Start, Mechanism::Plain) => Ok(Some(
                format!("\0{}\0{}", s.username, s.password).into_bytes(),
            )),
            (Step::Start, _) => {
                let mut raw = [0u8; 18];
                getrandom::fill(&mut raw).map_err(|e| Error::Other(format!("random: {e}")))?;
                let nonce = B64.encode(raw);
                let user = s.username.replace('=', "=3D").replace(',', "=2C");
                let bare = format!("n={user},r={nonce}");
                let first = format!("n,,{bare}");
                self.step = Step::ScramFirst { bare, nonce };
                Ok(Some(first.into_bytes()))
            }
            (Step::ScramFirst { bare, nonce }, m) => {
                let server_first = std::str::from_utf8(server.unwrap_or_default())
                    .map_err(|_| auth("SCRAM: the server's first message is not UTF-8"))?;
                let field = |k: &str| {
                    server_first
                        .split(',')
                        .find_map(|f| f.strip_prefix(&format!("{k}=")))
                        .ok_or_else(|| {
                            auth(format!("SCRAM: the server's first message lacks {k}="))
                        })
                };
                let (r, salt, rounds) = (field("r")?, field("s")?, field("i")?);
                if !r.starts_with(&nonce) {
                    return Err(auth("SCRAM: the server's nonce does not extend ours"));
                }
                let salt = B64
                    .decode(salt)
                    .map_err(|_| auth("SCRAM: the salt is not base64"))?;
                let rounds: u32 = rounds
                    .parse()
                    .map_err(|_| auth("SCRAM: the iteration count is not a number"))?;
                let salted = salted(m, s.password.as_bytes(), &salt, rounds);
                let client_key = hmac(m, &salted, b"Client Key");
                let stored_key = hash(m, &client_key);
                let without_proof = format!("c=biws,r={r}");
                let message = format!("{bare},{server_first},{without_proof}");
                let signature = hmac(m, &stored_key, message.as_bytes());
                let proof: Vec<u8> = client_key
                    .iter()
                    .zip(&signature)
                    .map(|(a, b)| a ^ b)
                    .collect();
                let server_key = hmac(m, &salted, b"Server Key");
                self.step = Step::ScramFinal {
                    server_signature: hmac(m, &server_key, message.as_bytes()),
                };
                Ok(Some(
                    format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
                ))
            }
            (Step::ScramFinal { server_signature }, _) => {
                let last = std::str::from_utf8(server.unwrap_or_default()).unwrap_or("");
                if let Some(e) = last.strip_prefix("e=") {
                    return Err(auth(format!("SCRAM: the server refused: {e}")));
                }
                let v = last
                    .strip_prefix("v=")
                    .and_then(|v| B64.decode(v).ok())
                    .ok_or_else(|| auth("SCRAM: the server's last message has no signature"))?;
                if v != server_signature {
                    return Err(auth(
                        "SCRAM: the server's signature is wrong: it does not know the password (or is not the server)",
                    ));
                }
                Ok(None)
            }
            (Step::Done, _) => Ok(None),
        }
    }
}

fn salted(m: Mechanism, password: &[u8], salt: &[u8], rounds: u32) -> Vec<u8> {
    match m {
        Mechanism::ScramSha512 => {
            let mut out = [0u8; 64];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, &mut out);
            out.to_vec()
        }
        _ => {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut out);
            out.to_vec()
        }
    }
}

fn hmac(m: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match m {
        Mechanism::ScramSha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn hash(m: Mechanism, data: &[u8]) -> Vec<u8> {
    match m {
        Mechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        _ => Sha256::digest(data).to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example, with its client nonce.
    #[test]
    fn scram_sha256_matches_rfc_7677() {
        let sasl = Sasl {
            mechanism: Mechanism::ScramSha256,
            username: "user".into(),
            password: "pencil".into(),
        };
        let mut x = Exchange::new(&sasl);
        x.step = Step::ScramFirst {
            bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO".into(),
        };
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = x.step(Some(server_first)).unwrap().unwrap();
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(
            x.step(Some(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn plain_sends_name_and_password_once() {
        let sasl = Sasl {
            mechanism: Mechanism::Plain,
            username: "u".into(),
            password: "p".into(),
        };
        let mut x = Exchange::new(&sasl);
        assert_eq!(x.step(None).unwrap().unwrap(), b"\0u\0p");
        assert!(x.step(Some(b"")).unwrap().is_none());
    }
}
