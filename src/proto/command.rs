//! Client commands: the verbs the proxy polices; everything else is relayed verbatim.
//!
//! RFC 959 section 5.3 gives the syntax: a command is an alphabetic verb, then (for most
//! verbs) one `SP` and an argument, then `CRLF`. Verbs are case-insensitive (section 5.3.1).
//! The verbs recognised here are the ones whose handling is a security decision:
//!
//! - login and session reset (RFC 959 `USER`/`PASS`/`ACCT`/`REIN`/`QUIT`);
//! - data-channel setup, which the proxy must rewrite (RFC 959 `PORT`/`PASV`, RFC 2428
//!   `EPRT`/`EPSV`, RFC 1639 `LPRT`/`LPSV`, and the non-standard `SPSV`);
//! - transfers and their modifiers (RFC 959 `RETR`/`STOR`/`STOU`/`APPE`/`LIST`/`NLST`/`REST`/
//!   `ABOR`/`TYPE`/`MODE`/`STRU`, RFC 3659 `MLSD`);
//! - TLS (RFC 4217 `AUTH`/`PBSZ`/`PROT`/`CCC`) and capability or status replies that may need
//!   filtering (RFC 2389 `FEAT`, RFC 959 `STAT`);
//! - virtual-host selection (RFC 7151 `HOST`), which comes before login and may decide the
//!   route; its argument is checked by [`super::args::parse_host`].
//!
//! Arguments are kept as bytes: RFC 959 pathnames are not UTF-8 (RFC 2640 is optional), and a
//! verbatim relay must not re-encode them.

use bytes::Bytes;

/// A policed verb, or [`Verb::Other`] for anything relayed without interpretation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // The variants are the RFC verbs of the same name.
pub enum Verb {
    User,
    Pass,
    Acct,
    Rein,
    Quit,
    Port,
    Pasv,
    Eprt,
    Epsv,
    Lprt,
    Lpsv,
    Spsv,
    Retr,
    Stor,
    Stou,
    Appe,
    List,
    Nlst,
    Mlsd,
    Rest,
    Abor,
    Type,
    Mode,
    Stru,
    Auth,
    Pbsz,
    Prot,
    Ccc,
    Feat,
    Stat,
    Host,
    /// A well-formed verb that the proxy does not interpret (`CWD`, `XPWD`, `SITE`, ...).
    Other,
}

/// Which way a transfer's bytes flow on the data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Server to client: `RETR`, `LIST`, `NLST`, `MLSD`.
    Download,
    /// Client to server: `STOR`, `STOU`, `APPE`.
    Upload,
}

/// One parsed command line.
#[derive(Debug, Clone)]
pub struct CommandLine {
    /// The recognised verb.
    pub verb: Verb,
    /// The whole decoded line, as received (for verbatim relay).
    pub line: Bytes,
    /// Everything after the single `SP` that follows the verb; empty if there is none.
    pub arg: Bytes,
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// An empty line.
    #[error("empty command line")]
    Empty,
    /// The verb is not 3 or 4 ASCII letters followed by `SP` or the end of the line.
    #[error("malformed command verb")]
    BadVerb,
}

impl CommandLine {
    /// Splits a framed line into verb and argument.
    ///
    /// The verb is the bytes before the first `SP` (or the whole line) and must be 3 or 4
    /// ASCII letters. The argument is everything after that one `SP`, untouched: `"RETR  a"`
    /// has the argument `" a"`, so a relayed line is exactly what the client sent.
    pub fn parse(line: Bytes) -> Result<CommandLine, CommandError> {
        if line.is_empty() {
            return Err(CommandError::Empty);
        }
        let verb_len = verb_len(&line);
        let verb_bytes = line.get(..verb_len).unwrap_or(&[]);
        if !(3..=4).contains(&verb_len) || !verb_bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(CommandError::BadVerb);
        }
        let verb = Verb::from_name(verb_bytes);
        let arg = if verb_len < line.len() {
            line.slice(verb_len + 1..)
        } else {
            Bytes::new()
        };
        Ok(CommandLine { verb, line, arg })
    }

    /// The verb as the client spelt it (original case), e.g. for logs and 500 replies.
    pub fn verb_str(&self) -> &[u8] {
        self.line.get(..verb_len(&self.line)).unwrap_or(&[])
    }
}

fn verb_len(line: &[u8]) -> usize {
    line.iter().position(|&b| b == b' ').unwrap_or(line.len())
}

impl Verb {
    /// Maps a verb name (any case) to a [`Verb`]; unknown names are [`Verb::Other`].
    pub fn from_name(name: &[u8]) -> Verb {
        let mut upper = [0u8; 4];
        if name.len() > upper.len() {
            return Verb::Other;
        }
        for (u, b) in upper.iter_mut().zip(name) {
            *u = b.to_ascii_uppercase();
        }
        match upper.get(..name.len()).unwrap_or(&[]) {
            b"USER" => Verb::User,
            b"PASS" => Verb::Pass,
            b"ACCT" => Verb::Acct,
            b"REIN" => Verb::Rein,
            b"QUIT" => Verb::Quit,
            b"PORT" => Verb::Port,
            b"PASV" => Verb::Pasv,
            b"EPRT" => Verb::Eprt,
            b"EPSV" => Verb::Epsv,
            b"LPRT" => Verb::Lprt,
            b"LPSV" => Verb::Lpsv,
            b"SPSV" => Verb::Spsv,
            b"RETR" => Verb::Retr,
            b"STOR" => Verb::Stor,
            b"STOU" => Verb::Stou,
            b"APPE" => Verb::Appe,
            b"LIST" => Verb::List,
            b"NLST" => Verb::Nlst,
            b"MLSD" => Verb::Mlsd,
            b"REST" => Verb::Rest,
            b"ABOR" => Verb::Abor,
            b"TYPE" => Verb::Type,
            b"MODE" => Verb::Mode,
            b"STRU" => Verb::Stru,
            b"AUTH" => Verb::Auth,
            b"PBSZ" => Verb::Pbsz,
            b"PROT" => Verb::Prot,
            b"CCC" => Verb::Ccc,
            b"FEAT" => Verb::Feat,
            b"STAT" => Verb::Stat,
            b"HOST" => Verb::Host,
            _ => Verb::Other,
        }
    }

    /// The data-connection direction of a transfer verb, `None` for everything else.
    pub fn direction(self) -> Option<Direction> {
        match self {
            Verb::Retr | Verb::List | Verb::Nlst | Verb::Mlsd => Some(Direction::Download),
            Verb::Stor | Verb::Stou | Verb::Appe => Some(Direction::Upload),
            _ => None,
        }
    }

    /// Whether the verb opens a data transfer.
    pub fn is_transfer(self) -> bool {
        self.direction().is_some()
    }
}

/// Whether `line` looks like an HTTP request line (`METHOD target HTTP/x.y`).
///
/// Meant for the first line of a session: a browser or an HTTP client pointed at the FTP port
/// (or a cross-protocol attack riding one) gets the connection closed rather than a 500 for
/// every header line. The method is any run of ASCII letters, not a fixed list, so WebDAV and
/// `PRI * HTTP/2.0` are caught too; the version is matched case-insensitively.
pub fn looks_like_http(line: &[u8]) -> bool {
    const SUFFIX_LEN: usize = b" HTTP/x.y".len();
    let Some(split) = line.len().checked_sub(SUFFIX_LEN) else {
        return false;
    };
    let (request, version) = line.split_at(split);
    let version_ok = match version {
        [b' ', h, t1, t2, p, b'/', major, b'.', minor] => {
            h.eq_ignore_ascii_case(&b'H')
                && t1.eq_ignore_ascii_case(&b'T')
                && t2.eq_ignore_ascii_case(&b'T')
                && p.eq_ignore_ascii_case(&b'P')
                && major.is_ascii_digit()
                && minor.is_ascii_digit()
        }
        _ => false,
    };
    if !version_ok {
        return false;
    }
    let Some(sp) = request.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (method, target) = request.split_at(sp);
    let target = target.get(1..).unwrap_or(&[]);
    !method.is_empty()
        && method.iter().all(u8::is_ascii_alphabetic)
        && !target.is_empty()
        && !target.contains(&b' ')
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &[u8]) -> Result<CommandLine, CommandError> {
        CommandLine::parse(Bytes::copy_from_slice(s))
    }

    #[test]
    fn parses_verb_and_arg() {
        let c = parse(b"RETR /pub/file.txt").unwrap();
        assert_eq!(c.verb, Verb::Retr);
        assert_eq!(&c.arg[..], b"/pub/file.txt");
        assert_eq!(&c.line[..], b"RETR /pub/file.txt");
        assert_eq!(c.verb_str(), b"RETR");
    }

    #[test]
    fn verbs_are_case_insensitive_and_keep_spelling() {
        let c = parse(b"pOrT 1,2,3,4,5,6").unwrap();
        assert_eq!(c.verb, Verb::Port);
        assert_eq!(c.verb_str(), b"pOrT");
        assert_eq!(parse(b"ccc").unwrap().verb, Verb::Ccc);
    }

    #[test]
    fn host_verb() {
        let c = parse(b"HOST ftp.example.com").unwrap();
        assert_eq!(c.verb, Verb::Host);
        assert_eq!(&c.arg[..], b"ftp.example.com");
        let c = parse(b"host [2001:db8::1]").unwrap();
        assert_eq!(c.verb, Verb::Host);
        assert_eq!(&c.arg[..], b"[2001:db8::1]");
        assert_eq!(parse(b"HOST").unwrap().verb, Verb::Host);
        assert_eq!(Verb::Host.direction(), None);
        assert_eq!(parse(b"HOSTS x").unwrap_err(), CommandError::BadVerb);
    }

    #[test]
    fn no_arg_and_trailing_space() {
        let c = parse(b"PASV").unwrap();
        assert_eq!(c.verb, Verb::Pasv);
        assert!(c.arg.is_empty());
        let c = parse(b"EPSV ").unwrap();
        assert_eq!(c.verb, Verb::Epsv);
        assert!(c.arg.is_empty());
    }

    #[test]
    fn arg_keeps_bytes_exactly() {
        let c = parse(b"STOR  caf\xe9 \xff.txt ").unwrap();
        assert_eq!(c.verb, Verb::Stor);
        assert_eq!(&c.arg[..], b" caf\xe9 \xff.txt ");
    }

    #[test]
    fn unknown_and_x_verbs_are_other() {
        for l in [
            &b"XPWD"[..],
            b"XCWD /",
            b"CWD /",
            b"SITE CHMOD 1 x",
            b"MLST x",
            b"NOOP",
        ] {
            assert_eq!(parse(l).unwrap().verb, Verb::Other, "{l:?}");
        }
    }

    #[test]
    fn empty_and_bad_verbs() {
        assert_eq!(parse(b"").unwrap_err(), CommandError::Empty);
        for l in [
            &b" USER a"[..],
            b"US",
            b"USERS a",
            b"US3R a",
            b"USER\ta",
            b"227 ok",
            b"R\xc9TR x",
            b" ",
        ] {
            assert_eq!(parse(l).unwrap_err(), CommandError::BadVerb, "{l:?}");
        }
    }

    #[test]
    fn directions() {
        for v in [Verb::Retr, Verb::List, Verb::Nlst, Verb::Mlsd] {
            assert_eq!(v.direction(), Some(Direction::Download));
            assert!(v.is_transfer());
        }
        for v in [Verb::Stor, Verb::Stou, Verb::Appe] {
            assert_eq!(v.direction(), Some(Direction::Upload));
            assert!(v.is_transfer());
        }
        for v in [Verb::Port, Verb::Rest, Verb::Abor, Verb::Other] {
            assert_eq!(v.direction(), None);
            assert!(!v.is_transfer());
        }
    }

    #[test]
    fn http_request_lines() {
        for l in [
            &b"GET / HTTP/1.1"[..],
            b"CONNECT host:443 HTTP/1.0",
            b"POST /x?y=1 HTTP/1.1",
            b"PRI * HTTP/2.0",
            b"get / http/1.0",
        ] {
            assert!(looks_like_http(l), "{l:?}");
        }
        for l in [
            &b"USER anonymous"[..],
            b"GET /",
            b"GET  HTTP/1.1",
            b"GET a b HTTP/1.1",
            b"HTTP/1.1",
            b" / HTTP/1.1",
            b"GET / HTTP/1.1 ",
            b"GET / HTTP/11",
            b"",
        ] {
            assert!(!looks_like_http(l), "{l:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(c) = parse(&data) {
                prop_assert!(c.verb_str().len() >= 3);
                prop_assert_eq!(&c.line[..], &data[..]);
            }
            let _ = looks_like_http(&data);
        }
    }
}
