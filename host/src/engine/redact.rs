//! Secrets never leave a run: the one redaction step every error message
//! and log line of a run passes through before it is stored, served or
//! printed.
//!
//! A [`Redactor`] knows the resolved values of the secrets a run was
//! granted and replaces each by its reference, `${secret:NAME}`. It also
//! catches the forms a value takes when a connector or the host quotes it:
//! escaped inside JSON, up to three times over (the connector's config is
//! JSON, and an error may quote it inside JSON again), and percent-encoded
//! inside a URL (a denial message quotes the URL asked for).

use std::sync::Arc;

/// Text replacements, longest match first, so that a needle holding
/// another is replaced whole: what [`Redactor`] (and the service's naming of
/// its own places by role) apply.
#[derive(Clone, Default)]
pub struct Replace {
    /// (what to find, what to write instead), longest first.
    needles: Arc<Vec<(String, String)>>,
}

impl std::fmt::Debug for Replace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The needles may be secrets: never print them.
        write!(f, "Replace({} needles)", self.needles.len())
    }
}

impl Replace {
    /// Replaces each `find` by its `with`; empty and repeated needles are
    /// dropped (the first one wins).
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut needles: Vec<(String, String)> = Vec::new();
        for (find, with) in pairs {
            if !find.is_empty() && !needles.iter().any(|(f, _)| *f == find) {
                needles.push((find, with));
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.0.len()));
        Replace {
            needles: Arc::new(needles),
        }
    }

    /// Whether there is nothing to replace.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every needle replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (needle, with) in self.needles.iter() {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), with);
            }
        }
        out
    }
}

/// Replaces resolved secret values by their references.
#[derive(Clone, Debug, Default)]
pub struct Redactor(Replace);

/// Characters percent-encoded in the forms a URL may carry a value in
/// (path segment, query value).
const URL_FORM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl Redactor {
    /// A redactor for `secrets`: (name, resolved value) pairs. Empty values
    /// are skipped (there is nothing to hide).
    pub fn new<N: AsRef<str>, V: AsRef<str>>(secrets: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut pairs = Vec::new();
        for (name, value) in secrets {
            let (name, value) = (name.as_ref(), value.as_ref());
            if value.is_empty() {
                continue;
            }
            let reference = format!("${{secret:{name}}}");
            // The value, and the value escaped into a JSON string once,
            // twice or three times (a config quoted in an error quoted in
            // JSON) ...
            let mut quoted = vec![value.to_string()];
            for _ in 0..3 {
                let inner = quoted.last().map(String::as_str).unwrap_or_default();
                let json = serde_json::to_string(inner).unwrap_or_default();
                quoted.push(json[1..json.len() - 1].to_string());
            }
            // ... each also percent-encoded, as a URL carries it.
            let mut forms = Vec::new();
            for q in &quoted {
                forms.push(q.clone());
                forms.push(percent_encoding::utf8_percent_encode(q, URL_FORM).to_string());
                forms.push(
                    percent_encoding::utf8_percent_encode(q, percent_encoding::CONTROLS)
                        .to_string(),
                );
            }
            pairs.extend(forms.into_iter().map(|f| (f, reference.clone())));
        }
        Redactor(Replace::new(pairs))
    }

    /// Whether there is anything to redact.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every secret value replaced by its reference.
    pub fn text(&self, text: &str) -> String {
        self.0.text(text)
    }

    /// `e` as one redacted message, its causes joined as `{e:#}` joins
    /// them.
    pub fn error(&self, e: &anyhow::Error) -> String {
        self.text(&crate::engine::failure::describe(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_value_becomes_its_reference() {
        let r = Redactor::new([("TOKEN", "s3cr\"t/v?lue"), ("EMPTY", "")]);
        let twice =
            serde_json::to_string(&serde_json::to_string("s3cr\"t/v?lue").unwrap()).unwrap();
        assert!(!r.text(&twice).contains("s3cr"), "{}", r.text(&twice));
        assert_eq!(
            r.text("raw s3cr\"t/v?lue, json \"s3cr\\\"t/v?lue\", url s3cr%22t%2Fv%3Flue"),
            "raw ${secret:TOKEN}, json \"${secret:TOKEN}\", url ${secret:TOKEN}"
        );
        assert_eq!(r.text("nothing here"), "nothing here");
    }

    #[test]
    fn a_secret_holding_another_is_replaced_whole() {
        let r = Redactor::new([("SHORT", "abc"), ("LONG", "abcdef")]);
        assert_eq!(r.text("abcdef abc"), "${secret:LONG} ${secret:SHORT}");
    }

    #[test]
    fn errors_are_redacted_through_their_causes() {
        let r = Redactor::new([("K", "hunter22")]);
        let e = anyhow::anyhow!("token hunter22 refused").context("reading s3://b/?k=hunter22");
        assert_eq!(
            r.error(&e),
            "reading s3://b/?k=${secret:K}: token ${secret:K} refused"
        );
    }
}
