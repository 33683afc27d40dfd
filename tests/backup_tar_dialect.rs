//! The tar dialect against the real thing: every header of the data files
//! the Perl client wrote re-encodes to the same 512-byte blocks, and GNU tar
//! lists what we write (long names, big inodes, concatenated gzip members).

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::read::MultiGzDecoder;
use mailvault::formats::backup_tar::{
    encode_header, imap_name, padding_len, EntryHeader, TarReader,
};
use mailvault::formats::gzip_members::MemberWriter;

fn fixtures() -> Option<PathBuf> {
    common::shared_fixtures().map(|dir| dir.join("perl-store"))
}

fn data_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for variant in ["plain", "gz", "after-run1/plain", "after-run1/gz"] {
        let data = root.join(variant).join("data");
        for user in std::fs::read_dir(&data).unwrap() {
            for f in std::fs::read_dir(user.unwrap().path()).unwrap() {
                out.push(f.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

fn uncompressed(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        MultiGzDecoder::new(&raw[..]).read_to_end(&mut out).unwrap();
        out
    } else {
        raw
    }
}

#[test]
fn every_perl_header_reencodes_byte_for_byte() {
    let Some(root) = fixtures() else { return };
    let files = data_files(&root);
    assert_eq!(files.len(), 12);
    let mut headers = 0;
    for path in files {
        let bytes = uncompressed(&path);
        let mut r = TarReader::new(&bytes[..]);
        while let Some(e) = r.next_entry().unwrap() {
            let ours = encode_header(&e.header).unwrap();
            let theirs = &bytes[e.offset as usize..e.data_offset as usize];
            assert_eq!(
                ours,
                theirs,
                "{}: entry {:?} at {}",
                path.display(),
                e.header.name,
                e.offset
            );
            let body = r.read_body().unwrap();
            let pad_end = e.data_offset as usize + body.len() + padding_len(e.header.size);
            assert!(bytes[e.data_offset as usize + body.len()..pad_end]
                .iter()
                .all(|&b| b == 0));
            headers += 1;
        }
        assert_eq!(
            r.position(),
            bytes.len() as u64,
            "{}: stream ends at the last entry",
            path.display()
        );
    }
    assert!(headers > 150, "read {headers} headers");
}

#[test]
fn the_alice_tar_has_the_entries_expected_md_lists() {
    let Some(root) = fixtures() else { return };
    let bytes = uncompressed(&root.join("plain/data/alice/backupdata-1795660355.tar"));
    let mut r = TarReader::new(&bytes[..]);
    let mut entries = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        entries.push(e);
    }
    assert_eq!(entries.len(), 52);
    let first = &entries[0];
    assert_eq!((first.offset, first.header.name.as_str()), (0, "meta/sub"));
    assert_eq!(first.header.devminor, 10051912);
    let marker = entries.iter().find(|e| e.offset == 57344).unwrap();
    assert_eq!(marker.header.name, "imap/INBOX.Junk/");
    assert_eq!(marker.header.linkname, "");
    assert_eq!(marker.header.typeflag, b'2');
    let last = entries.last().unwrap();
    assert_eq!(last.offset, 69120);
    assert_eq!(last.header.linkname, "1df0a254-296f-4c8e-b889-de06b9424586");
}

fn write_entry(out: &mut impl Write, h: &EntryHeader, body: &[u8]) {
    out.write_all(&encode_header(h).unwrap()).unwrap();
    out.write_all(body).unwrap();
    out.write_all(&vec![0u8; padding_len(h.size)]).unwrap();
}

fn sample_entries() -> Vec<(EntryHeader, Vec<u8>)> {
    let body = b"Subject: hi\r\n\r\nbody\r\n".to_vec();
    let sha = mailvault::formats::Guid::of(&body).to_hex();
    let long_folder = format!("INBOX.{}", "Very long folder name ".repeat(6));
    vec![
        (
            EntryHeader::file(
                &format!("files/{sha}"),
                &sha,
                body.len() as u64,
                1735805700,
                1 << 30,
            ),
            body,
        ),
        (
            EntryHeader::link(&imap_name(&long_folder), "uid-1", 1795660355),
            Vec::new(),
        ),
        (
            EntryHeader::link(&imap_name("INBOX/with/slashes"), "uid-2", 1795660355),
            Vec::new(),
        ),
        (
            EntryHeader::link("imap/INBOX.Gone/", "", 1795660355),
            Vec::new(),
        ),
    ]
}

fn gnu_tar_lists(path: &Path, gz: bool) -> String {
    let flags = if gz { "tvzf" } else { "tvf" };
    let out = Command::new("tar")
        .arg(flags)
        .arg(path)
        .output()
        .expect("GNU tar runs");
    assert!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn gnu_tar_lists_what_we_write_plain_and_as_gzip_members() {
    if Command::new("tar").arg("--version").output().is_err() {
        common::skip(&common::current_test(), "GNU tar absent");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let entries = sample_entries();

    let plain = dir.path().join("backupdata-1.tar");
    let mut f = std::fs::File::create(&plain).unwrap();
    for (h, body) in &entries {
        write_entry(&mut f, h, body);
    }
    drop(f);

    let gz = dir.path().join("backupdata-1.tar.gz");
    let mut w = MemberWriter::new(std::fs::File::create(&gz).unwrap(), 6, 0, 0);
    for (h, body) in &entries {
        write_entry(&mut w, h, body);
        w.finish_member().unwrap();
    }
    w.into_inner().unwrap();

    for (path, is_gz) in [(&plain, false), (&gz, true)] {
        let listing = gnu_tar_lists(path, is_gz);
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), entries.len(), "{listing}");
        for ((h, _), line) in entries.iter().zip(&lines) {
            assert!(line.contains(&h.name), "{line:?} lacks {:?}", h.name);
        }
        assert!(lines[1].contains("-> uid-1"), "{}", lines[1]);
        assert!(
            lines[2].contains("imap/INBOX%2Fwith%2Fslashes/"),
            "{}",
            lines[2]
        );
    }
}
