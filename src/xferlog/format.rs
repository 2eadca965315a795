//! One xferlog line (`man 5 xferlog`), as wu-ftpd defined it and vsftpd and ProFTPD
//! write it, so `xferstats`, ProFTPD's `ftpstats`, AWStats and fail2ban-style tools read
//! ftpgate's log as theirs:
//!
//! `current-time transfer-time remote-host file-size filename transfer-type
//! special-action-flag direction access-mode username service-name authentication-method
//! authenticated-user-id completion-status`
//!
//! Fields are separated by single spaces, so the two free-text fields (filename,
//! username) must never contain one: spaces become `_` as in vsftpd and ProFTPD, and
//! control bytes (a hostile name's CR or LF could otherwise forge a line) and backslashes
//! are escaped as `\xNN`.

use crate::metrics::families::{TransferDirection, TransferResult};
use crate::session::core::TransferRecord;
use std::fmt::Write;
use std::net::IpAddr;

/// The line for `record` (without its newline), or `None` for a listing: FTP servers do
/// not log LIST/NLST/MLSD in xferlog, and log readers expect only files there.
pub fn line(record: &TransferRecord, client: IpAddr, now: &str) -> Option<String> {
    let direction = match record.direction {
        TransferDirection::download => 'o',
        TransferDirection::upload => 'i',
        TransferDirection::listing => return None,
    };
    // Whole seconds, floored, at least 1, as vsftpd writes it (readers divide by it).
    let secs = record
        .ended
        .saturating_duration_since(record.started)
        .as_secs()
        .max(1);
    let kind = if record.ascii { 'a' } else { 'b' };
    let (mode, user) = match (&record.user, record.anonymous()) {
        (Some(u), false) => ('r', field(u)),
        (Some(u), true) => ('a', field(u)),
        (None, _) => ('r', "*".to_string()),
    };
    let status = match record.result {
        TransferResult::ok => 'c',
        TransferResult::failed | TransferResult::aborted => 'i',
    };
    let client = crate::proto::hostport::canonical_ip(client);
    let mut out = String::with_capacity(96 + record.path.len());
    let _ = write!(
        out,
        "{now} {secs} {client} {bytes} {file} {kind} _ {direction} {mode} {user} ftp 0 * {status}",
        bytes = record.bytes,
        file = field(&record.path),
    );
    Some(out)
}

/// A free-text field: never empty, never a space, a control character or a byte that is
/// not UTF-8 (written as `\xNN`, so distinct names stay distinct).
fn field(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".to_string();
    }
    let mut out = String::with_capacity(bytes.len());
    let hex = |out: &mut String, b: u8| {
        let _ = write!(out, "\\x{b:02x}");
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                ' ' => out.push('_'),
                '\\' => out.push_str("\\x5c"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        hex(&mut out, b);
                    }
                }
                c if c.is_whitespace() => out.push('_'),
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            hex(&mut out, b);
        }
    }
    out
}

/// The current local time as xferlog writes it: `Wed Dec  2 13:45:01 2026`.
pub fn now() -> String {
    chrono::Local::now()
        .format("%a %b %e %H:%M:%S %Y")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn record(path: &[u8], direction: TransferDirection) -> TransferRecord {
        let t0 = Instant::now();
        TransferRecord {
            command: "RETR".into(),
            path: path.to_vec(),
            direction,
            bytes: 1_048_576,
            started: t0,
            ended: t0 + Duration::from_millis(3900),
            user: Some(b"alice".to_vec()),
            ascii: false,
            result: TransferResult::ok,
            code: 226,
            accepted: true,
        }
    }

    const NOW: &str = "Wed Dec  2 13:45:01 2026";

    fn fields(line: &str) -> Vec<&str> {
        // The date is five fields, as log readers split it.
        line.split(' ').filter(|f| !f.is_empty()).collect()
    }

    #[test]
    fn a_download_has_the_fourteen_fields_of_vsftpd() {
        let r = record(b"/pub/file.bin", TransferDirection::download);
        let l = line(&r, "192.0.2.7".parse().unwrap(), NOW).unwrap();
        assert_eq!(
            l,
            "Wed Dec  2 13:45:01 2026 3 192.0.2.7 1048576 /pub/file.bin b _ o r alice ftp 0 * c"
        );
        assert_eq!(fields(&l).len(), 5 + 13);
    }

    #[test]
    fn upload_anonymous_ascii_incomplete_ipv6() {
        let mut r = record(b"in.txt", TransferDirection::upload);
        r.user = Some(b"Anonymous".to_vec());
        r.ascii = true;
        r.result = TransferResult::aborted;
        r.ended = r.started;
        let l = line(&r, "2001:db8::5".parse().unwrap(), NOW).unwrap();
        assert!(
            l.ends_with(" 1 2001:db8::5 1048576 in.txt a _ i a Anonymous ftp 0 * i"),
            "{l}"
        );
        // An IPv4 client on a dual-stack socket is written as IPv4.
        let l = line(&r, "::ffff:192.0.2.9".parse().unwrap(), NOW).unwrap();
        assert!(l.contains(" 192.0.2.9 "), "{l}");
    }

    #[test]
    fn names_cannot_add_fields_or_lines() {
        let r = record(
            b"my file\r\nWed Dec  2 1 1.2.3.4 9 /etc/passwd b _ o r root ftp 0 * c\t\x1b[31m\\\xff",
            TransferDirection::download,
        );
        let l = line(&r, "192.0.2.7".parse().unwrap(), NOW).unwrap();
        assert!(
            !l.contains('\r') && !l.contains('\n') && !l.contains('\t'),
            "{l}"
        );
        assert!(!l.contains('\x1b'), "{l}");
        assert_eq!(fields(&l).len(), 18, "{l}");
        assert!(l.contains("my_file\\x0d\\x0aWed_Dec__2_1_1.2.3.4"), "{l}");
        assert!(l.contains("\\x09\\x1b[31m\\x5c\\xff"), "{l}");
    }

    #[test]
    fn listings_are_not_logged_and_empty_names_are_a_dash() {
        let r = record(b"", TransferDirection::listing);
        assert_eq!(line(&r, "192.0.2.7".parse().unwrap(), NOW), None);
        let mut r = record(b"", TransferDirection::download);
        r.user = None;
        let l = line(&r, "192.0.2.7".parse().unwrap(), NOW).unwrap();
        assert!(l.contains(" 1048576 - b _ o r * ftp 0 * c"), "{l}");
    }

    #[test]
    fn the_date_is_asctime_in_local_time() {
        let n = now();
        let f: Vec<&str> = n.split(' ').filter(|f| !f.is_empty()).collect();
        assert_eq!(f.len(), 5, "{n}");
        assert_eq!(f[3].len(), 8, "{n}");
    }
}
